"""Health checks as frames (apps/lbprobe.py): what each kind sends, and its verdict on the member's
answers, built and read as bytes."""

import ipaddress

import pytest

from kumoflow.apps.lbmodel import Monitor, expected_codes
from kumoflow.apps.lbprobe import Check
from kumoflow.packet import ICMP, TCP, UDP, Ethernet, IPv4, parse
from kumoflow.packet.consts import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

VIP, MEMBER = ipaddress.ip_address("10.0.0.100"), ipaddress.ip_address("10.0.0.11")
VIP_MAC, MEMBER_MAC = "fa:16:3e:00:00:64", "fa:16:3e:00:00:0b"


def check(kind, **monitor):
    m = Monitor("hm", kind, 5, 2, 2, 3, **monitor)
    return Check(m, VIP_MAC, MEMBER_MAC, VIP, (MEMBER, 8080), 40000, 1000, now=10.0)


def from_member(payload):
    return bytes(Ethernet(src=MEMBER_MAC, dst=VIP_MAC) / IPv4(src=str(MEMBER), dst=str(VIP)) / payload)


def test_tcp_passes_on_a_syn_ack_and_leaves_no_half_open_connection():
    c = check("TCP")
    syn = parse(c.first())
    assert (syn[Ethernet].src, syn[IPv4].src, syn[IPv4].dst, syn[TCP].dport, syn[TCP].flags, syn[TCP].seq) == \
        (VIP_MAC, str(VIP), str(MEMBER), 8080, TCP_SYN, 1000)
    answer = from_member(TCP(sport=8080, dport=40000, seq=5000, ack=1001, flags=TCP_SYN | TCP_ACK))
    assert c.matches(answer)
    frames, result = c.answer(answer, now=10.004)
    assert result.ok and result.latency == pytest.approx(0.004)
    assert parse(frames[0])[TCP].flags == TCP_RST and parse(frames[0])[TCP].seq == 1001


def test_tcp_fails_on_a_reset_and_ignores_other_connections():
    c = check("TCP")
    assert not c.matches(from_member(TCP(sport=8080, dport=40001, flags=TCP_RST)))
    assert not c.matches(from_member(TCP(sport=9090, dport=40000, flags=TCP_RST)))
    _, result = c.answer(from_member(TCP(sport=8080, dport=40000, flags=TCP_RST | TCP_ACK, ack=1001)), now=10.1)
    assert not result.ok and "RST" in result.detail
    assert not c.timed_out().ok


def test_http_sends_its_request_after_the_handshake_and_judges_the_status_code():
    c = check("HTTP", path="/health", codes=expected_codes("200,202-204"), domain="web.example")
    c.first()
    frames, result = c.answer(from_member(TCP(sport=8080, dport=40000, seq=5000, ack=1001,
                                              flags=TCP_SYN | TCP_ACK)), now=10.002)
    request = parse(frames[0])
    assert result is None and request[TCP].seq == 1001 and request[TCP].ack == 5001
    assert bytes(request.payload).startswith(b"GET /health HTTP/1.0\r\nHost: web.example\r\n")
    sent = len(bytes(request.payload))
    frames, result = c.answer(from_member(TCP(sport=8080, dport=40000, seq=5001, ack=1001 + sent, flags=TCP_ACK)
                                          / b"HTTP/1.0 203 Non-Authoritative\r\n"), now=10.302)
    assert result.ok and result.detail == "HTTP 203" and result.latency == pytest.approx(0.3)
    assert parse(frames[0])[TCP].flags == TCP_RST


@pytest.mark.parametrize("data,flags,detail", [(b"HTTP/1.1 404 Not Found\r\n", TCP_ACK, "HTTP 404"),
                                               (b"SSH-2.0-OpenSSH\r\n", TCP_ACK, "not an HTTP answer"),
                                               (b"", TCP_FIN | TCP_ACK, "closed before answering")])
def test_http_fails_on_an_unexpected_answer(data, flags, detail):
    c = check("HTTP")
    c.first()
    c.answer(from_member(TCP(sport=8080, dport=40000, seq=5000, ack=1001, flags=TCP_SYN | TCP_ACK)), now=10.0)
    segment = TCP(sport=8080, dport=40000, seq=5001, ack=1001, flags=flags)
    _, result = c.answer(from_member(segment / data if data else segment), now=10.1)
    assert not result.ok and result.detail == detail


def test_ping_and_udp_connect():
    ping = check("PING")
    request = parse(ping.first())[ICMP]
    reply = from_member(ICMP(type=0, code=0, id=request.id, seq=request.seq) / b"kumoflow")
    assert ping.matches(reply) and ping.answer(reply, now=10.001)[1].ok
    udp = check("UDP-CONNECT")
    sent = udp.first()
    assert parse(sent)[UDP].dport == 8080
    unreachable = from_member(ICMP(type=3, code=3) / sent[14:42])      # the datagram's IP and UDP headers
    assert udp.matches(unreachable)
    assert not udp.answer(unreachable, now=10.1)[1].ok
    assert udp.timed_out().ok            # silence: Octavia's UDP-CONNECT passes


def test_expected_codes_forms():
    assert expected_codes("200") == ((200, 200),)
    assert expected_codes("200,202") == ((200, 200), (202, 202))
    assert expected_codes("200-204") == ((200, 204),)
    assert expected_codes([[200, 299]]) == ((200, 299),)


def test_http_reads_the_answer_whatever_order_its_segments_reach_the_controller():
    c = check("HTTP")
    c.first()
    c.answer(from_member(TCP(sport=8080, dport=40000, seq=5000, ack=1001, flags=TCP_SYN | TCP_ACK)), now=10.0)
    head, rest = b"HTTP/1.0 200 OK\r\n", b"Server: x\r\n\r\n"
    fin = from_member(TCP(sport=8080, dport=40000, seq=5001 + len(head) + len(rest), ack=1001,
                          flags=TCP_FIN | TCP_ACK))
    assert c.answer(fin, now=10.1) == ([], None)          # the FIN first: the answer is still on its way
    second = from_member(TCP(sport=8080, dport=40000, seq=5001 + len(head), ack=1001, flags=TCP_ACK) / rest)
    assert c.answer(second, now=10.1) == ([], None)
    _, result = c.answer(from_member(TCP(sport=8080, dport=40000, seq=5001, ack=1001, flags=TCP_ACK) / head),
                         now=10.2)
    assert result.ok and result.detail == "HTTP 200"
