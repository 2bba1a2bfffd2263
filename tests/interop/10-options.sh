#!/usr/bin/env bash
# SIPp OPTIONS pings over UDP and TCP against the release binary: every
# ping gets 200 with an Allow header listing OPTIONS.
source "$(dirname "$0")/common.bash"
start_server
sipp_options u1 "$SB_UDP_PORT" 500 200
sipp_options t1 "$SB_TCP_PORT" 500 200
stop_server
echo "ok: SIPp OPTIONS over UDP and TCP (500 each) answered 200"
