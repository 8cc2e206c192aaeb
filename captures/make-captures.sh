#!/usr/bin/env bash
# Regenerates the replay captures in this directory with real tools (dnsmasq, curl, nc,
# socat, dig, iodine, dns2tcp) running inside network namespaces on this machine.
#
# Why namespaces: every packet stays on veth pairs between namespaces this script creates;
# nothing is sent to any other address, and no Internet is needed. Servers use addresses from
# the documentation ranges (198.51.100.0/24, 203.0.113.0/24, 192.0.2.0/24, 2001:db8::/32),
# which are never routed anywhere.
#
# Topology (all L2 segments are Linux bridges inside pt-router):
#
#   pt-client  10.99.0.10, fd99::10 ─┐
#   pt-client2 10.99.0.11           ─┤ br-lan (10.99.0.1)  <- every capture is taken here,
#   pt-resolver lan0 10.99.0.53     ─┘   fd99::/64            as a sensor at the LAN edge
#               (dnsmasq)                                     would see it
#   pt-resolver wan0 198.51.100.2   ─┐
#   pt-server  198.51.100.7 .44 .77 ─┤ br-wan (198.51.100.1, 203.0.113.1, 192.168.50.1)
#              .53 (iodined) .54 (dns2tcpd), 203.0.113.9, 192.168.50.77
#
# The resolver has a leg on each segment so that its upstream forwarding (to iodined and
# dns2tcpd) never crosses br-lan: the captures hold client<->resolver DNS only, plus the
# clients' routed TCP to the servers, like a sensor between the clients and the rest.
#
# Usage: sudo ./make-captures.sh   (root; takes about 2 minutes; idempotent: it removes
# leftovers of an earlier run first and everything it made on exit).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
NSS=(pt-client pt-client2 pt-resolver pt-server pt-router)
PIDS=()
WORK=""

die() { echo "make-captures: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (ip netns, tcpdump)"
for t in ip tcpdump tshark capinfos editcap mergecap dnsmasq dig curl nc socat iodine iodined \
    dns2tcpc dns2tcpd getent ping python3; do
    command -v "$t" >/dev/null || die "missing tool: $t (apt-get install tcpdump tshark dnsmasq \
dnsutils curl netcat-openbsd socat iodine dns2tcp iputils-ping)"
done

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# Starts a long-running process in a namespace and remembers its pid for cleanup.
# `ip netns exec` execs the command, so $! is the daemon itself.
spawn() { local ns=$1; shift; ip netns exec "$ns" "$@" & LAST=$!; PIDS+=("$LAST"); }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.5
    for ns in "${NSS[@]}"; do
        if ip netns list | grep -qw "^$ns"; then
            # Only processes inside namespaces this script owns, by pid.
            for p in $(ip netns pids "$ns"); do kill "$p" 2>/dev/null; done
            ip netns del "$ns"
        fi
    done
    rm -rf /etc/netns/pt-client /etc/netns/pt-client2
    rmdir /etc/netns 2>/dev/null
    [ -n "$WORK" ] && rm -rf "$WORK"
}
cleanup   # leftovers of an interrupted earlier run
trap cleanup EXIT
WORK=$(mktemp -d /tmp/portent-captures.XXXXXX)
chmod 755 "$WORK"

# ---------------------------------------------------------------------------------------
# Topology
# ---------------------------------------------------------------------------------------
for ns in "${NSS[@]}"; do
    ip netns add "$ns"
    nsx "$ns" ip link set lo up
    # Quiet IPv6 (router solicitations, MLD) except where the IPv6 fragment test needs it.
    nsx "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.all.disable_ipv6=1
done
for ns in pt-client pt-resolver; do
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0
done

R=pt-router
nsx $R ip link add br-lan type bridge mcast_snooping 0
nsx $R ip link add br-wan type bridge mcast_snooping 0
# port NS IFNAME BRIDGE: a veth from the bridge in pt-router to IFNAME inside NS.
port() {
    local ns=$1 ifname=$2 br=$3 side="v${3#br-}-${1#pt-}"
    nsx $R ip link add "${side:0:15}" type veth peer name "$ifname" netns "$ns"
    nsx $R ip link set "${side:0:15}" master "$br" up
    nsx "$ns" ip link set "$ifname" up
}
port pt-client eth0 br-lan
port pt-client2 eth0 br-lan
port pt-resolver lan0 br-lan
port pt-resolver wan0 br-wan
port pt-server eth0 br-wan
nsx $R ip link set br-lan up
nsx $R ip link set br-wan up
nsx $R ip addr add 10.99.0.1/24 dev br-lan
for a in 198.51.100.1/24 203.0.113.1/24 192.168.50.1/24; do nsx $R ip addr add $a dev br-wan; done
nsx $R sysctl -qw net.ipv4.ip_forward=1

nsx pt-client ip addr add 10.99.0.10/24 dev eth0
nsx pt-client ip -6 addr add fd99::10/64 dev eth0 nodad
nsx pt-client ip route add default via 10.99.0.1
nsx pt-client2 ip addr add 10.99.0.11/24 dev eth0
nsx pt-client2 ip route add default via 10.99.0.1
nsx pt-resolver ip addr add 10.99.0.53/24 dev lan0
nsx pt-resolver ip -6 addr add fd99::53/64 dev lan0 nodad
nsx pt-resolver ip addr add 198.51.100.2/24 dev wan0
nsx pt-resolver ip route add default via 198.51.100.1
for a in 198.51.100.7/24 198.51.100.44/24 198.51.100.77/24 198.51.100.53/24 198.51.100.54/24 \
    203.0.113.9/24 192.168.50.77/24; do
    nsx pt-server ip addr add $a dev eth0
done
nsx pt-server ip route add default via 198.51.100.1

# glibc in the clients resolves through the resolver: `ip netns exec` bind-mounts
# /etc/netns/NS/resolv.conf over /etc/resolv.conf, so curl/getent use real stub lookups.
for ns in pt-client pt-client2; do
    mkdir -p /etc/netns/$ns
    printf 'nameserver 10.99.0.53\noptions timeout:2 attempts:2\n' >/etc/netns/$ns/resolv.conf
done

# ---------------------------------------------------------------------------------------
# Resolver: dnsmasq, authoritative-style local data plus forwarding of the two tunnel zones
# ---------------------------------------------------------------------------------------
# big.c2-portent.test: 150 filler A records in 192.0.2.0/24 (whose formula ports all fall
# below 4096) and one formula-valid address, so the answer is ~2.5 KB and must be
# IP-fragmented over the 1280-byte MTU; the formula address is only visible after reassembly.
BIG_TARGET=198.51.100.77
{
    for i in $(seq 1 150); do echo "192.0.2.$i big.c2-portent.test"; done
    echo "$BIG_TARGET big.c2-portent.test"
} >"$WORK/big.hosts"
# bigtxt.c2-portent.test: 12 TXT records of ~230 bytes (~3 KB), one per line because
# dnsmasq caps the length of a configuration line.
BIGTXT=""
for i in $(seq 1 12); do
    BIGTXT+="txt-record=bigtxt.c2-portent.test,\"chunk$i-$(printf 'portent-fragment-test-%.0s' $(seq 1 10))\""$'\n'
done
cat >"$WORK/dnsmasq.conf" <<EOF
no-resolv
no-hosts
keep-in-foreground
bind-interfaces
listen-address=10.99.0.53
listen-address=fd99::53
pid-file=
user=root
log-queries
log-facility=$WORK/dnsmasq.log
# Answers larger than the classic 1232 default, for the fragmentation capture.
edns-packet-max=4096
# A 5-minute TTL, the same as portent's answer window.
local-ttl=300
# --- DNS Calculation scenario ---------------------------------------------------------
local=/c2-portent.test/
host-record=update.c2-portent.test,198.51.100.7
host-record=cdn.c2-portent.test,203.0.113.9
host-record=intranet.c2-portent.test,192.168.50.77
host-record=late.c2-portent.test,198.51.100.44
addn-hosts=$WORK/big.hosts
$BIGTXT# --- Tunnel zones, delegated to the server namespace -------------------------------------
server=/t.portent-tunnel.test/198.51.100.53
server=/d.portent-tunnel.test/198.51.100.54
# --- Ordinary names for the false-positive control ---------------------------------------
local=/example.com/
local=/example.org/
local=/example.net/
host-record=example.com,192.0.2.10,2001:db8::10
host-record=www.example.com,192.0.2.10,2001:db8::10
host-record=mail.example.com,192.0.2.25
host-record=api.example.org,192.0.2.40,2001:db8::40
host-record=www.example.org,192.0.2.41
host-record=cdn.example.net,192.0.2.80,2001:db8::80
host-record=docs.example.net,192.0.2.81
cname=www.example.net,cdn.example.net
cname=static.example.net,cdn.example.net
mx-host=example.com,mail.example.com,10
mx-host=example.org,mail.example.com,20
txt-record=example.com,"v=spf1 mx -all"
txt-record=_dmarc.example.com,"v=DMARC1; p=reject"
txt-record=example.org,"google-site-verification=portent-test-token"
EOF
spawn pt-resolver dnsmasq -C "$WORK/dnsmasq.conf"
DNSMASQ=$LAST

# ---------------------------------------------------------------------------------------
# Servers: TCP listeners that answer like a tiny web server, on every port the scenarios use
# ---------------------------------------------------------------------------------------
printf '#!/bin/sh\nprintf "HTTP/1.0 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n"\n' \
    >"$WORK/http-ok.sh"
chmod 755 "$WORK/http-ok.sh"
for p in 80 443 10198 10199 22939 32306; do
    spawn pt-server socat TCP-LISTEN:$p,fork,reuseaddr EXEC:"$WORK/http-ok.sh"
done
# Echo service behind dns2tcp.
spawn pt-server socat TCP-LISTEN:7777,bind=198.51.100.7,fork,reuseaddr EXEC:cat

wait_for() { # wait_for SECONDS CMD...: polls until CMD succeeds
    local n=$(($1 * 5)); shift
    for _ in $(seq 1 $n); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}
wait_for 10 nsx pt-client dig +time=1 +tries=1 @10.99.0.53 update.c2-portent.test \
    || die "dnsmasq did not answer"
wait_for 10 nsx pt-client nc -z -w 1 198.51.100.7 80 || die "server listeners not up"

# capture_start FILE: tcpdump on br-lan, the LAN edge, full packets.
capture_start() {
    ip netns exec $R tcpdump -q -i br-lan -U -w "$1" 2>"$WORK/tcpdump.err" &
    CAP=$!
    wait_for 10 grep -q "listening on" "$WORK/tcpdump.err" || die "tcpdump did not start"
    sleep 0.5
}
capture_stop() { sleep 1; kill -INT "$CAP"; wait "$CAP" || true; }

# Ordinary lookups from pt-client2 (10.99.0.11): A/AAAA/MX/TXT/CNAME names and some
# NXDOMAIN, in ROUNDS rounds spread over the capture. Real dig, through the resolver.
benign_list() {
    cat <<EOF
www.example.com A
www.example.com AAAA
example.com MX
example.com TXT
_dmarc.example.com TXT
mail.example.com A
api.example.org A
api.example.org AAAA
www.example.org A
example.org MX
example.org TXT
www.example.net A
static.example.net A
cdn.example.net AAAA
docs.example.net A
nosuch.example.com A
wwww.example.com A
login.example.org A
EOF
}
benign_lookups() { # benign_lookups ROUNDS PAUSE
    benign_list >"$WORK/benign.txt"
    for _ in $(seq 1 "$1"); do
        nsx pt-client2 dig @10.99.0.53 +tries=1 +time=2 -f "$WORK/benign.txt" >/dev/null || true
        sleep "$2"
    done
}

# ---------------------------------------------------------------------------------------
# 1. dns-calc.pcap: DNS Calculation positives and negative controls
# ---------------------------------------------------------------------------------------
echo "== dns-calc"
capture_start "$WORK/calc-main.pcap"
# Positive 1: glibc resolves update.c2-portent.test (A+AAAA) to 198.51.100.7, then curl
# connects to 198*51+100 = 10198 (o1*o2+o3), the Atomic Red Team T1568.003 formula.
nsx pt-client curl -s -m 5 -o /dev/null http://update.c2-portent.test:10198/
sleep 0.5
# Negatives: the same client, the same resolved address, ordinary ports and a near miss.
nsx pt-client curl -s -m 5 -o /dev/null http://update.c2-portent.test:443/ || true
sleep 0.3
nsx pt-client curl -s -m 5 -o /dev/null http://update.c2-portent.test:80/
sleep 0.3
nsx pt-client curl -s -m 5 -o /dev/null http://update.c2-portent.test:10199/
sleep 0.5
# Positive 2: cdn.c2-portent.test -> 203.0.113.9, port 203*(0+113) = 22939 (o1*(o2+o3)).
nsx pt-client curl -s -m 5 -o /dev/null http://cdn.c2-portent.test:22939/
sleep 0.5
# Negative: another client that never resolved the name hits the same formula port.
nsx pt-client2 nc -z -w 3 198.51.100.7 10198
sleep 0.5
# Negative: a formula port (192*168+50 = 32306) of a name answered with a private address;
# the default internal-range filter skips it.
nsx pt-client curl -s -m 5 -o /dev/null http://intranet.c2-portent.test:32306/
sleep 0.5
# Resolution only; the matching SYN comes in the separate, time-shifted capture below.
nsx pt-client getent ahostsv4 late.c2-portent.test >/dev/null
capture_stop

# The late match: 198.51.100.44:10198 (198*51+100) by address, no lookup. Captured apart and
# shifted +400 s, past the 300 s window: waiting 5 minutes for real would be the only other way.
capture_start "$WORK/calc-late.pcap"
nsx pt-client curl -s -m 5 -o /dev/null http://198.51.100.44:10198/
capture_stop
editcap -t 400 "$WORK/calc-late.pcap" "$WORK/calc-late-shifted.pcap"
mergecap -F pcap -w "$HERE/dns-calc.pcap" "$WORK/calc-main.pcap" "$WORK/calc-late-shifted.pcap"

# ---------------------------------------------------------------------------------------
# 2. iodine.pcap: iodine through the resolver, with ordinary lookups alongside
# ---------------------------------------------------------------------------------------
echo "== iodine"
[ -c /dev/net/tun ] || die "/dev/net/tun missing: iodine needs TUN"
spawn pt-server iodined -f -c -P portent-secret -l 198.51.100.53 -p 53 \
    172.30.0.1/27 t.portent-tunnel.test
IODINED=$LAST
wait_for 10 nsx pt-server ip link show dns0 || die "iodined did not start"
capture_start "$WORK/iodine.pcap"
benign_lookups 15 1.5 &
BENIGN=$!
# The client talks to the resolver (10.99.0.53), never to iodined directly; the resolver
# forwards the zone. -r skips iodine's raw-UDP probe, which would otherwise find the server
# reachable and bypass DNS altogether. iodine probes encodings, record types and fragment
# sizes itself.
spawn pt-client iodine -f -r -P portent-secret 10.99.0.53 t.portent-tunnel.test
IODINE=$LAST
wait_for 40 nsx pt-client ping -c 1 -W 1 172.30.0.1 || die "iodine tunnel did not come up"
sleep 1
nsx pt-client ping -q -c 20 -i 0.2 -W 2 172.30.0.1 || true
# 32 KB up (client -> server, in query names) and 32 KB down (in answers).
spawn pt-server sh -c "nc -l 172.30.0.1 5001 >/dev/null"
SINK=$LAST
sleep 0.3
head -c 32768 /dev/urandom >"$WORK/blob"
nsx pt-client timeout 30 nc -N 172.30.0.1 5001 <"$WORK/blob" || true
stop "$SINK"
spawn pt-server sh -c "nc -N -l 172.30.0.1 5002 <'$WORK/blob'"
SRC=$LAST
sleep 0.3
nsx pt-client timeout 30 nc -d 172.30.0.1 5002 >"$WORK/blob.down" || true
echo "iodine downstream bytes: $(stat -c %s "$WORK/blob.down")"
stop "$SRC"
wait "$BENIGN" || true
stop "$IODINE"
capture_stop
stop "$IODINED"

# ---------------------------------------------------------------------------------------
# 3. dns2tcp.pcap: dns2tcp through the resolver to a TCP echo service
# ---------------------------------------------------------------------------------------
echo "== dns2tcp"
mkdir -p "$WORK/chroot"
cat >"$WORK/dns2tcpd.conf" <<EOF
listen = 198.51.100.54
port = 53
user = nobody
chroot = $WORK/chroot
domain = d.portent-tunnel.test
key = portent-secret
resources = echo:198.51.100.7:7777
EOF
spawn pt-server dns2tcpd -F -f "$WORK/dns2tcpd.conf"
DNS2TCPD=$LAST
sleep 1
capture_start "$WORK/dns2tcp.pcap"
benign_lookups 15 1.5 &
BENIGN=$!
spawn pt-client dns2tcpc -z d.portent-tunnel.test -k portent-secret -r echo -l 4444 10.99.0.53
DNS2TCPC=$LAST
wait_for 10 nsx pt-client nc -z 127.0.0.1 4444 || die "dns2tcpc did not listen"
# 24 KB through the tunnel to the echo service and back; the reader stops once it has
# every byte (dns2tcp does not pass half-closes, so EOF cannot end it).
head -c 24576 /dev/urandom >"$WORK/blob2"
nsx pt-client timeout 60 python3 - "$WORK/blob2" <<'EOF' || true
import socket, sys
data = open(sys.argv[1], "rb").read()
s = socket.create_connection(("127.0.0.1", 4444))
s.sendall(data)
got = b""
while len(got) < len(data):
    b = s.recv(65536)
    if not b:
        break
    got += b
print("dns2tcp echoed", len(got), "of", len(data), "bytes, equal:", got == data)
EOF
wait "$BENIGN" || true
stop "$DNS2TCPC"
capture_stop
stop "$DNS2TCPD"

# ---------------------------------------------------------------------------------------
# 4. benign-lookups.pcap: the ordinary client alone (no tunnel, no formula port)
# ---------------------------------------------------------------------------------------
echo "== benign-lookups"
capture_start "$WORK/benign.pcap"
benign_lookups 16 0.3
capture_stop

# ---------------------------------------------------------------------------------------
# 5. dns-fragmented.pcap: big UDP answers over a 1280-byte MTU, so they arrive as IP fragments
# ---------------------------------------------------------------------------------------
echo "== dns-fragmented"
# Only the resolver's LAN leg is narrowed: it sends the big answers, and the kernel fragments
# them locally (IPv4 and IPv6 alike) rather than truncating.
nsx pt-resolver ip link set dev lan0 mtu 1280
capture_start "$WORK/frag.pcap"
# IPv4: ~2.5 KB A answer holding the formula address after the 150 fillers; then the SYN.
nsx pt-client dig @10.99.0.53 +bufsize=4096 +tries=1 big.c2-portent.test A >"$WORK/big.dig"
nsx pt-client curl -s -m 5 -o /dev/null "http://$BIG_TARGET:10198/"
sleep 0.3
# IPv4: ~3 KB TXT answer.
nsx pt-client dig @10.99.0.53 +bufsize=4096 +tries=1 bigtxt.c2-portent.test TXT >/dev/null
# IPv6: the same TXT answer over IPv6, fragmented with a Fragment extension header.
nsx pt-client dig -6 @fd99::53 +bufsize=4096 +tries=1 bigtxt.c2-portent.test TXT >/dev/null
# A 512-byte buffer: the resolver truncates (TC) and dig retries over TCP.
nsx pt-client dig @10.99.0.53 +bufsize=512 +tries=1 bigtxt.c2-portent.test TXT >/dev/null
capture_stop
nsx pt-resolver ip link set dev lan0 mtu 1500
grep -q "$BIG_TARGET" "$WORK/big.dig" || die "big answer lacks $BIG_TARGET"
# dnsmasq orders the 151 records by its own hash; the formula address must sit past the
# first fragment (~1250 bytes of DNS message, 16 bytes per A record) for the test to mean
# "visible only after reassembly".
pos=$(grep -v '^;' "$WORK/big.dig" | grep 'IN	A' | grep -n "$BIG_TARGET" | cut -d: -f1)
echo "big answer: $(grep -v '^;' "$WORK/big.dig" | grep -c 'IN	A') A records; $BIG_TARGET at $pos"
[ "$pos" -gt 80 ] || die "$BIG_TARGET is in the first fragment (position $pos)"

cp "$WORK/iodine.pcap" "$HERE/iodine.pcap"
cp "$WORK/dns2tcp.pcap" "$HERE/dns2tcp.pcap"
cp "$WORK/benign.pcap" "$HERE/benign-lookups.pcap"
cp "$WORK/frag.pcap" "$HERE/dns-fragmented.pcap"

# ---------------------------------------------------------------------------------------
# Expected detections, machine-readable (tab-separated, one header line)
# ---------------------------------------------------------------------------------------
TAB=$'\t'
tsv() { local IFS="$TAB"; echo "$*"; }
{
    tsv client dst_ip dst_port formula name resolved_to
    tsv 10.99.0.10 198.51.100.7 10198 'o1*o2+o3' update.c2-portent.test 198.51.100.7
    tsv 10.99.0.10 203.0.113.9 22939 'o1*(o2+o3)' cdn.c2-portent.test 203.0.113.9
} >"$HERE/dns-calc.expected.tsv"
{
    tsv client dst_ip dst_port why_no_alert name
    tsv 10.99.0.10 198.51.100.7 443 "ordinary port of a resolved address" update.c2-portent.test
    tsv 10.99.0.10 198.51.100.7 80 "ordinary port of a resolved address" update.c2-portent.test
    tsv 10.99.0.10 198.51.100.7 10199 "no formula gives 10199 (near miss of 10198)" \
        update.c2-portent.test
    tsv 10.99.0.11 198.51.100.7 10198 "this client never resolved the name (per-client cache)" -
    tsv 10.99.0.10 192.168.50.77 32306 \
        "internal address (192*168+50); alerts only with the internal-range filter off" \
        intranet.c2-portent.test
    tsv 10.99.0.10 198.51.100.44 10198 \
        "outside the 300 s window: SYN about 400 s after the answer (time-shifted +400 s)" \
        late.c2-portent.test
} >"$HERE/dns-calc.controls.tsv"
{
    tsv client dst_ip dst_port formula name resolved_to
    tsv 10.99.0.10 $BIG_TARGET 10198 'o1*o2+o3' big.c2-portent.test $BIG_TARGET
} >"$HERE/dns-fragmented.expected.tsv"
# Queries per client and registered domain, counted by tshark in the written capture.
queries() { # queries PCAP CLIENT DOMAIN
    tshark -r "$1" -Y "dns.flags.response==0 && ip.src==$2 && \
dns.qry.name matches \"(^|\\\\.)${3//./\\\\.}\$\"" 2>/dev/null | wc -l
}
for t in iodine:t dns2tcp:d benign-lookups:; do
    f=${t%%:*} z=${t#*:}
    {
        tsv client registered_domain zone tool expect queries
        if [ -n "$z" ]; then
            tsv 10.99.0.10 portent-tunnel.test $z.portent-tunnel.test $f tunnel \
                "$(queries "$HERE/$f.pcap" 10.99.0.10 portent-tunnel.test)"
        fi
        for d in example.com example.org example.net; do
            tsv 10.99.0.11 $d - - none "$(queries "$HERE/$f.pcap" 10.99.0.11 $d)"
        done
    } >"$HERE/$f.expected.tsv"
done

# ---------------------------------------------------------------------------------------
# Verification: tshark (which reassembles IP fragments) counts DNS messages and client SYNs
# ---------------------------------------------------------------------------------------
echo "== summary"
printf '%-22s %9s %8s %9s %6s\n' capture bytes packets dns_msgs syns
for f in dns-calc iodine dns2tcp benign-lookups dns-fragmented; do
    p="$HERE/$f.pcap"
    dns=$(tshark -r "$p" -Y "dns && (udp.port==53 || tcp.port==53)" 2>/dev/null | wc -l)
    syn=$(tshark -r "$p" -Y "tcp.flags.syn==1 && tcp.flags.ack==0" 2>/dev/null | wc -l)
    pk=$(capinfos -c -M "$p" | awk -F: '/Number of packets/ {gsub(/ /,"",$2); print $2}')
    printf '%-22s %9s %8s %9s %6s\n' "$f.pcap" "$(stat -c %s "$p")" "$pk" "$dns" "$syn"
done
echo "dnsmasq answered $(grep -c 'query\[' "$WORK/dnsmasq.log") queries in all"
