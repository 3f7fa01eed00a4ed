from agent.profiles import load_profiles


def test_every_shipped_profile_loads():
    profiles = load_profiles()
    assert profiles, "no hardware profiles shipped"
