#!/usr/bin/env python3
"""Subscription load for bench/subscriptions.sh (Python 3 standard library only).

Registers extensions 1000..1000+N-1 with one UAS socket as their contact,
subscribes S watchers (dialog package, RFC 4235) spread evenly over them
from W watcher sockets, then places calls at R per second between them for
T seconds (ring RING_MS, talk TALK_MS, BYE) and measures each lamp NOTIFY's
latency: from the SIP event that changed the lamp (the callee's INVITE
arriving, its 200 leaving, the caller's BYE leaving) to the NOTIFY
arriving. Prints counts and latency percentiles as `key value` lines.
"""
import asyncio, hashlib, os, random, re, sys, time

SERVER = (sys.argv[1], int(sys.argv[2]))
DOMAIN = "bench.test"
N = int(os.environ.get("N_EXT", "1000"))
S = int(os.environ.get("N_SUBS", "10000"))
W = int(os.environ.get("N_WATCHERS", "10"))
RATE = float(os.environ.get("RATE", "100"))
SECONDS = float(os.environ.get("SECONDS", "30"))
RING_MS = int(os.environ.get("RING_MS", "200"))
TALK_MS = int(os.environ.get("TALK_MS", "1000"))
EXT0 = 1000

def pw(ext): return f"pw-{ext}-x"
def rnd(): return f"{random.getrandbits(64):016x}"

def parse(data):
    text = data.decode("utf-8", "replace")
    head, _, body = text.partition("\r\n\r\n")
    lines = head.split("\r\n")
    hdrs = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return lines[0], hdrs, body

def h(hdrs, name): return hdrs.get(name.lower(), [""])[0]

def digest(chal, method, uri, user, password):
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', chal))
    alg = params.get("algorithm", "MD5").upper()
    H = (lambda s: hashlib.sha256(s.encode()).hexdigest()) if alg == "SHA-256" else (lambda s: hashlib.md5(s.encode()).hexdigest())
    ha1 = H(f"{user}:{params['realm']}:{password}")
    ha2 = H(f"{method}:{uri}")
    cnonce = rnd()
    if "qop" in params:
        resp = H(f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}")
        extra = f', qop=auth, nc=00000001, cnonce="{cnonce}"'
    else:
        resp = H(f"{ha1}:{params['nonce']}:{ha2}")
        extra = ""
    opaque = f', opaque="{params["opaque"]}"' if "opaque" in params else ""
    return (f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
            f'uri="{uri}", response="{resp}", algorithm={alg}{extra}{opaque}')

def response(hdrs, status, reason, extra="", body=""):
    out = f"SIP/2.0 {status} {reason}\r\n"
    for v in hdrs.get("via", []):
        out += f"Via: {v}\r\n"
    for k in ("From", "To", "Call-ID", "CSeq"):
        out += f"{k}: {h(hdrs, k)}\r\n"
    return (out + extra + f"Content-Length: {len(body)}\r\n\r\n" + body).encode()

class Sock(asyncio.DatagramProtocol):
    def __init__(self, on_msg): self.on_msg = on_msg
    def connection_made(self, t): self.t = t
    def datagram_received(self, data, addr): self.on_msg(self, data, addr)
    def send(self, data): self.t.sendto(data, SERVER)
    def port(self): return self.t.get_extra_info("sockname")[1]

class Bench:
    def __init__(self):
        self.pending = {}        # (call-id, cseq) -> future for a response
        self.trigger = {}        # (call-id, state, direction) -> monotonic time
        self.active = {}         # callee ext -> caller's call-id
        self.bleg = {}           # caller's call-id -> the callee leg's call-id
        self.seen = set()        # (watcher dialog call-id, call-id, state, direction)
        self.samples = []
        self.notifies = 0
        self.calls_ok = 0
        self.calls_failed = 0

    # --- requests with answers -------------------------------------------
    async def transact(self, sock, text, callid, cseq, timeout=8):
        fut = asyncio.get_running_loop().create_future()
        self.pending[(callid, cseq)] = fut
        sock.send(text.encode() if isinstance(text, str) else text)
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self.pending.pop((callid, cseq), None)

    def on_response(self, first, hdrs, body):
        key = (h(hdrs, "Call-ID"), h(hdrs, "CSeq"))
        status = int(first.split()[1])
        fut = self.pending.get(key)
        if fut and not fut.done() and status >= 200:
            fut.set_result((status, hdrs, body))

    def request(self, method, uri, sock, frm, to, callid, cseq, extra="", body="", user="bench"):
        local = f"127.0.0.1:{sock.port()}"
        return (f"{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{rnd()};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: {frm}\r\nTo: {to}\r\nCall-ID: {callid}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:{user}@{local}>\r\n{extra}Content-Length: {len(body)}\r\n\r\n{body}")

    async def authed(self, sock, method, uri, user, frm, to, callid, extra="", body=""):
        r = await self.transact(sock, self.request(method, uri, sock, frm, to, callid, 1, extra, body, user), callid, f"1 {method}")
        if r[0] in (401, 407):
            if method == "INVITE":
                sock.send(self.request("ACK", uri, sock, frm, h(r[1], "To"), callid, 1).encode())
            chal = [c for c in r[1].get("proxy-authenticate", []) + r[1].get("www-authenticate", []) if "MD5" in c.upper() or "algorithm" not in c.lower()]
            chal = chal[0] if chal else (r[1].get("proxy-authenticate") or r[1].get("www-authenticate"))[0]
            name = "Proxy-Authorization" if r[0] == 407 else "Authorization"
            auth = f"{name}: {digest(chal, method, uri, user, pw(user))}\r\n"
            text = self.request(method, uri, sock, frm, to, callid, 2, extra + auth, body, user)
            if method == "INVITE":
                self.trigger[(callid, "early", "initiator")] = time.monotonic()
            r = await self.transact(sock, text, callid, f"2 {method}")
        return r

    # --- the phones' side ------------------------------------------------
    def on_uas(self, sock, data, addr):
        first, hdrs, body = parse(data)
        if first.startswith("SIP/2.0"):
            return self.on_response(first, hdrs, body)
        method = first.split()[0]
        if method == "INVITE":
            callee = re.search(r"sip:(\d+)@", first).group(1)
            callid = self.active.get(callee)
            # The callee's lamp names its own dialog (the B leg's Call-ID).
            bcid = h(hdrs, "Call-ID")
            if callid:
                self.bleg[callid] = bcid
                self.trigger[(bcid, "early", "recipient")] = time.monotonic()
            tag = rnd()
            hdrs["to"] = [h(hdrs, "To") + f";tag={tag}"]
            sock.t.sendto(response(hdrs, 180, "Ringing"), addr)
            sdp = f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {20000 + random.randrange(0, 20000, 2)} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            def answer():
                if callid:
                    now = time.monotonic()
                    self.trigger[(bcid, "confirmed", "recipient")] = now
                    self.trigger[(callid, "confirmed", "initiator")] = now
                sock.t.sendto(response(hdrs, 200, "OK", f"Contact: <sip:{callee}@127.0.0.1:{sock.port()}>\r\nContent-Type: application/sdp\r\n", sdp), addr)
            asyncio.get_running_loop().call_later(RING_MS / 1000, answer)
        elif method in ("BYE", "CANCEL", "OPTIONS"):
            sock.t.sendto(response(hdrs, 200, "OK"), addr)

    def on_watcher(self, sock, data, addr):
        first, hdrs, body = parse(data)
        if first.startswith("SIP/2.0"):
            return self.on_response(first, hdrs, body)
        if first.startswith("NOTIFY"):
            now = time.monotonic()
            sock.t.sendto(response(hdrs, 200, "OK"), addr)
            self.notifies += 1
            sub = h(hdrs, "Call-ID")
            for cid, direction, state in re.findall(r'call-id="([^"]*)"[^>]*direction="(\w+)">\n<state>(\w+)<', body):
                key = (sub, cid, state, direction)
                if key in self.seen:
                    continue
                self.seen.add(key)
                t0 = self.trigger.get((cid, state, direction))
                if t0 is not None:
                    self.samples.append(max(0.0, now - t0))

    # --- the run ---------------------------------------------------------
    async def run(self):
        loop = asyncio.get_running_loop()
        mk = lambda f: loop.create_datagram_endpoint(lambda: Sock(f), local_addr=("127.0.0.1", 0))
        _, uas = await mk(self.on_uas)
        _, uac = await mk(self.on_uas)
        watchers = [(await mk(self.on_watcher))[1] for _ in range(W)]
        exts = [str(EXT0 + i) for i in range(N)]
        sem = asyncio.Semaphore(100)
        async def register(ext):
            async with sem:
                aor = f"sip:{ext}@{DOMAIN}"
                r = await self.authed(uas, "REGISTER", f"sip:{DOMAIN}", ext, f"<{aor}>;tag={rnd()}", f"<{aor}>", rnd(),
                                      "Expires: 3600\r\n")
                return r[0]
        t = time.monotonic()
        regs = await asyncio.gather(*(register(e) for e in exts))
        print(f"registered {sum(1 for s in regs if s == 200)}/{N} in {time.monotonic() - t:.1f}s", flush=True)
        async def subscribe(i):
            async with sem:
                target = exts[i % N]
                me = exts[(i * 7 + 1) % N]
                sock = watchers[i % W]
                r = await self.authed(sock, "SUBSCRIBE", f"sip:{target}@{DOMAIN}", me, f"<sip:{me}@{DOMAIN}>;tag={rnd()}",
                                      f"<sip:{target}@{DOMAIN}>", rnd(), "Event: dialog\r\nExpires: 3600\r\n")
                return r[0]
        t = time.monotonic()
        subs = await asyncio.gather(*(subscribe(i) for i in range(S)))
        ok = sum(1 for s in subs if s == 200)
        print(f"subscribed {ok}/{S} in {time.monotonic() - t:.1f}s", flush=True)
        await asyncio.sleep(1)
        self.samples.clear()
        async def call(n):
            callee = exts[n % N]
            caller = exts[(n + N // 2) % N]
            if callee in self.active:
                return
            callid = rnd()
            self.active[callee] = callid
            uri = f"sip:{callee}@{DOMAIN}"
            frm = f"<sip:{caller}@{DOMAIN}>;tag={rnd()}"
            sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            try:
                r = await self.authed(uac, "INVITE", uri, caller, frm, f"<{uri}>", callid,
                                      "Content-Type: application/sdp\r\n", sdp)
                if r[0] != 200:
                    self.calls_failed += 1
                    return
                to = h(r[1], "To")
                uac.send(self.request("ACK", uri, uac, frm, to, callid, 2).encode())
                await asyncio.sleep(TALK_MS / 1000)
                now = time.monotonic()
                self.trigger[(self.bleg.get(callid, callid), "terminated", "recipient")] = now
                self.trigger[(callid, "terminated", "initiator")] = now
                b = await self.transact(uac, self.request("BYE", uri, uac, frm, to, callid, 3), callid, "3 BYE")
                if b[0] == 200:
                    self.calls_ok += 1
                else:
                    self.calls_failed += 1
            except asyncio.TimeoutError:
                self.calls_failed += 1
            finally:
                await asyncio.sleep(0.5)
                self.active.pop(callee, None)
        tasks = []
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < SECONDS:
            tasks.append(asyncio.create_task(call(n)))
            n += 1
            await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
        await asyncio.gather(*tasks)
        await asyncio.sleep(1)
        s = sorted(self.samples)
        pct = lambda p: s[min(len(s) - 1, int(len(s) * p))] * 1000 if s else float("nan")
        print(f"calls_ok {self.calls_ok}")
        print(f"calls_failed {self.calls_failed}")
        print(f"notifies {self.notifies}")
        print(f"lamp_changes_measured {len(s)}")
        print(f"notify_latency_ms_p50 {pct(0.50):.1f}")
        print(f"notify_latency_ms_p99 {pct(0.99):.1f}")
        print(f"notify_latency_ms_max {(s[-1] * 1000 if s else float('nan')):.1f}")

asyncio.run(Bench().run())
