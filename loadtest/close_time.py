"""Times client-initiated WebSocket closes against a running parley-server (development API key).

Each of 10 clients connects, reads `welcome`, then closes: the time covers the close frame, the
server's close frame and the end of the TCP connection (the `websockets` library waits for all
three). Usage, against a standalone node started with default auth settings:

    python3 -m venv /tmp/wsvenv && /tmp/wsvenv/bin/pip install websockets==13.1
    /tmp/wsvenv/bin/python loadtest/close_time.py 127.0.0.1:PORT
"""
import asyncio, json, sys, time, urllib.request
import websockets
addr=sys.argv[1]
req=urllib.request.Request(f"http://{addr}/api/v1/auth/token", data=json.dumps({"user_id":"u1"}).encode(), headers={"Content-Type":"application/json","X-Api-Key":"parley-dev-api-key"})
token=json.loads(urllib.request.urlopen(req).read())["token"]
async def one():
    ws=await websockets.connect(f"ws://{addr}/ws?token={token}")
    await ws.recv()
    t=time.monotonic()
    await ws.close()          # sends close, waits for the server's close and the TCP end
    return time.monotonic()-t
async def main():
    times=[await one() for _ in range(10)]
    print("client-initiated close, seconds:", " ".join(f"{x:.3f}" for x in times))
asyncio.run(main())
