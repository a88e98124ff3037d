#!/usr/bin/env python3
"""Stands in for a Raft group's `<group>-master` Service and the operator's leader label on
one machine: listens on LISTEN (the group's dLegerLeaderBrokerIP and listenPort) and forwards
each new connection to the replica that leads, chosen as the operator chooses it (the highest
term among replicas whose FERRUM_GET_RAFT_STATUS says Leader, asked with `ferrumctl raft status`
every POLL_MS). A connection whose upstream closes is closed, as with a Service whose endpoint
died.

  leader_proxy.py FERRUMCTL LISTEN_HOST:PORT POLL_MS BROKER_ADDR...

Prints `leader <ms> <addr>` on every change of the chosen leader.
"""
import asyncio
import json
import sys
import time

FERRUMCTL, LISTEN, POLL_MS = sys.argv[1], sys.argv[2], int(sys.argv[3])
BROKERS = sys.argv[4:]
leader = None


async def status(addr):
    proc = await asyncio.create_subprocess_exec(
        FERRUMCTL, "raft", "status", "-b", addr, "--json", "--timeout-ms", "300",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    try:
        return json.loads(out)
    except ValueError:
        return None


async def follow():
    global leader
    while True:
        answers = await asyncio.gather(*(status(a) for a in BROKERS))
        claims = sorted((s.get("term", 0), a) for a, s in zip(BROKERS, answers)
                        if s and s.get("role") == "Leader")
        chosen = None
        if claims and (len(claims) == 1 or claims[-1][0] != claims[-2][0]):
            chosen = claims[-1][1]
        # No leader observed: keep the last one, as the operator keeps the label.
        if chosen and chosen != leader:
            leader = chosen
            print(f"leader {int(time.time() * 1000)} {leader}", flush=True)
        await asyncio.sleep(POLL_MS / 1000)


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    target = leader
    if target is None:
        client_writer.close()
        return
    host, port = target.rsplit(":", 1)
    try:
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))


async def main():
    host, port = LISTEN.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port))
    async with server:
        await asyncio.gather(server.serve_forever(), follow())


asyncio.run(main())
