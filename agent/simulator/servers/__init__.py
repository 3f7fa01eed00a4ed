"""Protocol servers of the simulated farm: what each fake miner says on the wire.

One module per dialect: ``antminer`` (bmminer RPC 4028) and ``antminer_web`` (HTTP CGI with
Digest auth), ``whatsminer_v2`` (btminer RPC 4028, token + AES writes), ``whatsminer_v3``
(framed JSON on 4433), ``braiins`` (BOSminer RPC, bosminer.toml) and ``ssh`` (asyncssh).
``wire`` renders replies with firmware quirks and connection faults; ``listeners`` opens and
closes per-unit sockets as units reboot or refuse.
"""
