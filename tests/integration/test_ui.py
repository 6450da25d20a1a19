"""The browser UI, in Debian's chromium driven by Playwright, against a real controller process
(`kumoflow controller --app fabric --api ...`) and the emulated mesh of examples/mesh.yaml
(three kumoflow switches, two Open vSwitch bridges, six hosts in namespaces).

Playwright is pointed at the system browser (``executable_path``); it never downloads one. One
controller, network and browser serve the whole module, in order: log in (a bad token first),
the map has every switch and link of the topology file, a switch's flow counters rise while a
ping runs (pushed, no reload), a link cut turns red within a second and green again, the path
between two hosts is highlighted, a network created in the UI is in the API and a bad CIDR
shows the API's error, a narrow screen, and the controller stopped shows as unreachable and
comes back. Screenshots go to the test's temporary directory (their paths are printed).

Console errors: the browser logs every HTTP error answer a page gets ("Failed to load
resource: ... 401"); those the tests provoke on purpose are expected, counted and nothing else
may appear: no script error, no other console error.

Waits are bounded; the only timing asserted is the issue's: a link cut shows within a second.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from kumoflow.net import Network

from controller_process import ControllerProcess
from test_fabric_emulator import EXAMPLES, wait_until

pytestmark = [pytest.mark.root, pytest.mark.ovs]

import playwright.sync_api as playwright_api  # noqa: E402 (the test extra installs it)

SWITCHES = {"s1": 1, "s2": 2, "s3": 3, "s4": 4, "s5": 5}
#: the mesh's links between switches, (switch, port) at each end (examples/mesh.yaml)
LINKS = [(("s1", 2), ("s2", 1)), (("s2", 3), ("s3", 2)), (("s3", 4), ("s4", 3)), (("s4", 1), ("s1", 4)),
         (("s2", 13), ("s3", 12)), (("s5", 1), ("s1", 5)), (("s5", 2), ("s2", 5)), (("s5", 3), ("s3", 5)),
         (("s5", 4), ("s4", 5))]


def dpid(switch: str) -> str:
    return f"{SWITCHES[switch]:016x}"


def link_key(a: tuple[str, int], b: tuple[str, int]) -> str:
    """The map's key of a link, as topology.js makes it."""
    x, y = f"{dpid(a[0])}:{a[1]}", f"{dpid(b[0])}:{b[1]}"
    return f"{x}-{y}" if x < y else f"{y}-{x}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Console:
    """What the page logged: script errors and console errors, and the HTTP errors expected."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.expected: list[str] = []

    def expect(self, status: int, times: int = 1) -> None:
        self.expected += [f"status of {status}"] * times

    def check(self) -> None:
        unexpected = list(self.errors)
        for want in self.expected:
            match = next((e for e in unexpected if "Failed to load resource" in e and want in e), None)
            assert match is not None, f"expected a console error with {want!r}; the console had {self.errors}"
            unexpected.remove(match)
        assert not unexpected, f"console errors: {unexpected}"
        self.errors.clear()
        self.expected.clear()


class UI:
    def __init__(self, page, url: str, token: str, shots: Path, console: Console, net: Network,
                 controller: ControllerProcess) -> None:
        self.page, self.url, self.token, self.shots = page, url, token, shots
        self.console, self.net, self.controller = console, net, controller

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        print(f"screenshot: {path}", file=sys.stderr)
        return path

    def go(self, route: str) -> None:
        self.login()
        self.page.evaluate("route => { location.hash = route; }", route)

    def login(self) -> None:
        """Log in with the admin token unless this page is (each test may run alone)."""
        page = self.page
        if page.url.startswith(self.url) and page.evaluate("sessionStorage.getItem('kumoflow.token')") == self.token:
            return
        page.goto(f"{self.url}/ui/#/login")
        page.fill("#token", self.token)
        page.click("form.login button[type=submit]")
        page.wait_for_url(re.compile(r"#/topology$"))

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-Auth-Token": self.token}, timeout=30)


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ui")
    shots = tmp / "screenshots"
    shots.mkdir()
    api_port = free_port()          # the same API address after a restart: the page reconnects to it
    controller = ControllerProcess(apps=("fabric",), log=tmp / "controller.log",
                                   args=("--api", f"127.0.0.1:{api_port}", "--admin-token-file",
                                         str(tmp / "admin-token"), "--settle", "2"))
    name = f"ui{secrets.token_hex(3)}"
    net = None
    browser = None
    try:
        controller.start()
        net = Network.from_file(EXAMPLES / "mesh.yaml", name=name, fail_mode="secure",
                                controllers=[controller.target])
        net.up()
        net.wait_connected(60)
        chromium = shutil.which("chromium")
        assert chromium, "Debian's chromium is not installed (make setup installs it)"
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(30_000)
            console = Console()
            page.on("console", lambda m: console.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: console.errors.append(f"script error: {e}"))
            token = (tmp / "admin-token").read_text().strip()
            yield UI(page, controller.status["api"], token, shots, console, net, controller)
            browser.close()
            browser = None
    finally:
        try:
            if browser is not None:
                with contextlib.suppress(Exception):
                    browser.close()
            try:
                if net is not None:
                    net.down()
            except Exception:
                Network.teardown(name)
        finally:
            status = controller.stop()
            lines = (tmp / "controller.log").read_text(errors="replace").splitlines()
            print("--- controller log (tail)", *lines[-30:], sep="\n", file=sys.stderr)
            assert status == 0, f"the controller exited with {status}"


def test_login_shows_the_apis_401_for_a_bad_token_then_logs_in(ui):
    page = ui.page
    page.goto(f"{ui.url}/")
    assert page.url.endswith("/ui/#/login")
    page.fill("#token", "not-the-token")
    page.click("form.login button[type=submit]")
    error = page.locator("#login-error")
    playwright_api.expect(error).to_have_text("Authentication failed: the token is not valid.")
    ui.console.expect(401)
    ui.shot("login-refused")
    page.fill("#token", ui.token)
    page.click("form.login button[type=submit]")
    page.wait_for_url(re.compile(r"#/topology$"))
    playwright_api.expect(page.locator("#status")).to_have_text("live")
    assert page.evaluate("sessionStorage.getItem('kumoflow.token')") == ui.token
    ui.console.check()


def test_the_map_shows_every_switch_and_link_of_the_topology_file(ui):
    page = ui.page
    ui.go("#/topology")
    for switch in SWITCHES:
        page.wait_for_selector(f'svg.map g.switch[data-dpid="{dpid(switch)}"]', state="attached")
    kinds = {switch: page.get_attribute(f'svg.map g.switch[data-dpid="{dpid(switch)}"]', "class")
             for switch in SWITCHES}
    assert all("kumoflow" in kinds[s] for s in ("s1", "s2", "s5")), kinds
    assert all("ovs" in kinds[s] for s in ("s3", "s4")), kinds
    # links come as LLDP finds them: each of the file's, up, and no other
    for a, b in LINKS:
        page.wait_for_selector(f'svg.map path.link.up[data-key="{link_key(a, b)}"]', state="attached")
    assert page.locator("svg.map path.link").count() == len(LINKS)
    # the same in the tables, for keyboard and screen reader users
    assert page.locator("table tr[data-dpid]").count() == len(SWITCHES)
    assert page.locator("table tr[data-key]").count() == len(LINKS)
    # the hosts, once they have spoken
    assert wait_until(lambda: ui.net.ping_all(retries=1).ok, timeout=60, interval=0.5)
    playwright_api.expect(page.locator("svg.map g.host")).to_have_count(6)
    ui.shot("topology")
    ui.console.check()


def test_a_switch_page_opened_from_the_keyboard_shows_flow_counters_rising_while_a_ping_runs(ui):
    page = ui.page
    ui.go("#/topology")
    node = page.locator(f'svg.map g.switch[data-dpid="{dpid("s1")}"]')
    node.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"#/switch/{dpid('s1')}$"))
    page.wait_for_selector("tr[data-key] td.flow-text")
    text = page.inner_text("td.flow-text >> nth=0")
    assert "table=" in text and "priority=" in text and "actions=" in text, text    # ovs-ofctl syntax
    page.wait_for_selector("tr[data-port] td.num.rx_packets")
    page.evaluate("window.__same_page = true")

    def packets() -> int:
        return page.evaluate("""() => [...document.querySelectorAll('tr[data-key] td.n_packets')]
                                        .reduce((sum, td) => sum + Number(td.textContent.replace(/,/g, '')), 0)""")

    h1, h6 = ui.net["h1"], ui.net["h6"]
    before = packets()
    pinger = h1.popen(["ping", "-i", "0.2", "-w", "20", h6.ip], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: packets() >= before + 10, timeout=15, interval=0.25), (before, packets())
        middle = packets()
        assert wait_until(lambda: packets() >= middle + 5, timeout=15, interval=0.25), (middle, packets())
    finally:
        pinger.terminate()
        pinger.wait(10)
    assert page.evaluate("window.__same_page") is True          # pushed, not reloaded
    ports = page.locator("tr[data-port='101'] td.rx_packets").inner_text()
    assert int(ports.replace(",", "")) > 0
    ui.shot("switch-s1")
    ui.console.check()


def test_a_link_cut_turns_red_within_a_second_and_green_when_mended(ui):
    page = ui.page
    ui.go("#/topology")
    key = link_key(("s1", 2), ("s2", 1))
    page.wait_for_selector(f'svg.map path.link.up[data-key="{key}"]', state="attached")
    veth = ui.net.plan.names.port("s1", 2)
    subprocess.run(["ip", "link", "set", veth, "down"], check=True, timeout=10)
    try:
        page.wait_for_selector(f'svg.map path.link.down[data-key="{key}"]', state="attached", timeout=1000)
        playwright_api.expect(page.locator(f'tr[data-key="{key}"] td.state')).to_have_text("down")
        stroke = page.evaluate(f"""getComputedStyle(document.querySelector('svg.map path.link[data-key="{key}"]')).stroke""")
        assert stroke == "rgb(207, 34, 46)", stroke           # red
        ui.shot("link-cut")
    finally:
        subprocess.run(["ip", "link", "set", veth, "up"], check=True, timeout=10)
    page.wait_for_selector(f'svg.map path.link.up[data-key="{key}"]', state="attached", timeout=30_000)
    # the events page lists both, newest first
    ui.go("#/events")
    events = page.locator("#event-list li")
    playwright_api.expect(page.locator("#event-list li.link-down").first).to_contain_text(
        "link 0x1 port 2 - 0x2 port 1 DOWN")
    playwright_api.expect(events.first).to_contain_text("up")
    assert page.locator("#event-list li.resync").count() == 0     # the stream never broke
    ui.shot("events")
    ui.console.check()


def test_the_path_between_two_hosts_is_highlighted(ui):
    page = ui.page
    assert wait_until(lambda: ui.net.ping("h1", "h4"), timeout=60, interval=0.5)   # their IPv4 addresses known
    ui.go("#/path?src=10.0.0.1&dst=10.0.0.4")
    page.wait_for_selector("#path-result tr[data-dpid]")
    hops = page.eval_on_selector_all("#path-result tr[data-dpid]", "rows => rows.map(r => r.dataset.dpid)")
    # h1 on s1, h4 on s3: two hops apart (through s2, s4 or s5)
    assert hops[0] == dpid("s1") and hops[-1] == dpid("s3") and len(hops) == 3, hops
    with ui.api() as api:
        path = api.get("/sdn/path", params={"src": "10.0.0.1", "dst": "10.0.0.4"}).json()
    assert [h["dpid"] for h in path["hops"]] == hops
    assert page.locator("svg.map path.link.on-path").count() == 2
    assert page.locator("svg.map g.switch.on-path").count() == 3
    assert page.locator("svg.map g.host.on-path").count() == 2
    ui.shot("path-h1-h4")
    # a host that does not exist: the API's 404, shown
    page.fill("#path-dst", "10.9.9.9")
    page.click("#path-form button[type=submit]")
    playwright_api.expect(page.locator("#path-form .form-error")).to_contain_text("Host 10.9.9.9 could not be found")
    ui.console.expect(404)
    ui.console.check()


def test_a_network_created_in_the_ui_is_in_the_api_and_a_bad_cidr_shows_the_apis_error(ui):
    page = ui.page
    name = f"ui-net-{secrets.token_hex(3)}"
    ui.go("#/tenants")
    page.wait_for_selector("#create-network")
    page.fill("#network-name", name)
    page.click("#create-network button[type=submit]")
    page.wait_for_selector(f'tr[data-name="{name}"]')
    with ui.api() as api:
        found = api.get("/v2.0/networks", params={"name": name}).json()["networks"]
        assert len(found) == 1, found
        network_id = found[0]["id"]
        assert page.get_attribute(f'tr[data-name="{name}"]', "data-id") == network_id

        page.select_option("#subnet-network", network_id)
        page.fill("#subnet-cidr", "10.1.2.300/24")
        page.click("#create-subnet button[type=submit]")
        error = page.locator("#create-subnet .form-error")
        answer = api.post("/v2.0/subnets", json={"subnet": {"network_id": network_id, "cidr": "10.1.2.300/24"}})
        assert answer.status_code == 400
        message = answer.json()["NeutronError"]["message"]
        playwright_api.expect(error).to_contain_text(message)
        ui.console.expect(400)
        ui.shot("tenants-bad-cidr")

        # a good one, then the network deleted from the UI is gone from the API
        page.fill("#subnet-cidr", "10.1.2.0/24")
        page.click("#create-subnet button[type=submit]")
        playwright_api.expect(page.locator(f'tr[data-name="{name}"]')).to_contain_text("10.1.2.0/24")
        playwright_api.expect(error).to_be_empty()
        page.click(f'tr[data-name="{name}"] button.danger')
        playwright_api.expect(page.locator(f'tr[data-name="{name}"]')).to_have_count(0)
        assert api.get(f"/v2.0/networks/{network_id}").status_code == 404
    ui.console.check()


def test_a_port_binding_a_security_group_rule_and_a_load_balancer_member_made_and_removed_in_the_ui(ui):
    page = ui.page
    tag = secrets.token_hex(3)
    bridge = next(s.bridge for s in ui.net.plan.switches if s.name == "s2")
    with ui.api() as api:
        def made(path: str, kind: str, body: dict) -> dict:
            r = api.post(path, json={kind: body})
            assert r.status_code == 201, r.text
            return r.json()[kind]

        network = made("/v2.0/networks", "network", {"name": f"ui-lb-{tag}"})
        subnet = made("/v2.0/subnets", "subnet", {"network_id": network["id"], "cidr": "10.2.0.0/24"})
        group = made("/v2.0/security-groups", "security_group", {"name": f"ui-sg-{tag}"})
        lb = made("/v2/lbaas/loadbalancers", "loadbalancer", {"name": f"ui-lb-{tag}", "vip_subnet_id": subnet["id"]})
        listener = made("/v2/lbaas/listeners", "listener", {"loadbalancer_id": lb["id"], "protocol": "TCP",
                                                             "protocol_port": 80})
        pool = made("/v2/lbaas/pools", "pool", {"listener_id": listener["id"], "protocol": "TCP",
                                                "lb_algorithm": "ROUND_ROBIN"})
        ui.go("#/tenants")
        page.wait_for_selector(f'.lb[data-id="{lb["id"]}"]')

        # a port, created, bound to a switch port and unbound
        name = f"ui-port-{tag}"
        page.select_option("#port-network", network["id"])
        page.fill("#port-name", name)
        page.click("#create-port button[type=submit]")
        page.wait_for_selector(f'tr[data-name="{name}"]')
        [port] = api.get("/v2.0/ports", params={"name": name}).json()["ports"]
        page.select_option("#bind-port-id", port["id"])
        page.fill("#bind-host", bridge)
        page.fill("#bind-where", "7")
        page.click("#bind-port button[type=submit]")
        playwright_api.expect(page.locator(f'tr[data-name="{name}"] td.binding')).to_contain_text(bridge)
        bound = api.get(f"/v2.0/ports/{port['id']}").json()["port"]
        assert (bound["binding:host_id"], bound["binding:profile"]) == (bridge, {"port_no": 7})
        page.click(f'tr[data-name="{name}"] button:has-text("Unbind")')
        playwright_api.expect(page.locator(f'tr[data-name="{name}"] td.binding')).to_be_empty()
        assert api.get(f"/v2.0/ports/{port['id']}").json()["port"]["binding:host_id"] == ""

        # a security group rule, added and deleted
        page.select_option("#rule-group", group["id"])
        page.fill("#rule-protocol", "tcp")
        page.fill("#rule-min", "22")
        page.fill("#rule-max", "22")
        page.fill("#rule-remote", "10.0.0.0/8")
        page.click("#add-rule button[type=submit]")
        rules = lambda: [r for r in api.get("/v2.0/security-group-rules",  # noqa: E731
                                            params={"security_group_id": group["id"]}).json()["security_group_rules"]
                         if r["protocol"] == "tcp"]
        assert wait_until(lambda: len(rules()) == 1, timeout=10), rules()
        [rule] = rules()
        assert (rule["port_range_min"], rule["port_range_max"], rule["remote_ip_prefix"]) == (22, 22, "10.0.0.0/8")
        row = page.locator(f'.group[data-id="{group["id"]}"] tr[data-id="{rule["id"]}"]')
        playwright_api.expect(row).to_contain_text("ingress IPv4 tcp 22 from 10.0.0.0/8")
        row.locator("button.danger").click()
        playwright_api.expect(row).to_have_count(0)
        assert rules() == []

        # a load balancer member: a bad address shows Octavia's fault, a good one is added with its health,
        # then deleted
        page.select_option("#member-pool", pool["id"])
        page.fill("#member-address", "10.2.0.300")
        page.fill("#member-port", "80")
        page.click("#add-member button[type=submit]")
        answer = api.post(f"/v2/lbaas/pools/{pool['id']}/members",
                          json={"member": {"address": "10.2.0.300", "protocol_port": 80}})
        assert answer.status_code == 400
        playwright_api.expect(page.locator("#add-member .form-error")).to_have_text(answer.json()["faultstring"])
        ui.console.expect(400)
        page.fill("#member-address", "10.2.0.10")
        page.click("#add-member button[type=submit]")
        members = lambda: api.get(f"/v2/lbaas/pools/{pool['id']}/members").json()["members"]  # noqa: E731
        assert wait_until(lambda: len(members()) == 1, timeout=10), members()
        [member] = members()
        row = page.locator(f'.lb[data-id="{lb["id"]}"] tr[data-id="{member["id"]}"]')
        playwright_api.expect(row).to_contain_text("10.2.0.10:80")
        status = api.get(f"/v2/lbaas/loadbalancers/{lb['id']}/status").json()
        health = status["statuses"]["loadbalancer"]["listeners"][0]["pools"][0]["members"][0]["operating_status"]
        playwright_api.expect(row.locator("td.health-cell")).to_have_text(health)
        ui.shot("tenants-forms")
        row.locator("button.danger").click()
        playwright_api.expect(row).to_have_count(0)
        assert members() == []

        for path in (f"/v2/lbaas/pools/{pool['id']}", f"/v2/lbaas/listeners/{listener['id']}",
                     f"/v2/lbaas/loadbalancers/{lb['id']}", f"/v2.0/ports/{port['id']}",
                     f"/v2.0/security-groups/{group['id']}", f"/v2.0/networks/{network['id']}"):
            assert api.delete(path).status_code == 204, path
    ui.console.check()


def test_a_project_token_sees_its_tenants_page_only(ui):
    with ui.api() as api:
        project = f"ui-p-{secrets.token_hex(3)}"
        token = api.post("/v2.0/tokens", json={"token": {"project_id": project}}).json()["token"]
        mine = api.post("/v2.0/networks", headers={"X-Auth-Token": token["token"]},
                        json={"network": {"name": f"{project}-net"}}).json()["network"]
        other = api.post("/v2.0/networks", json={"network": {"name": f"{project}-admins"}}).json()["network"]
    context = ui.page.context.browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.on("console", lambda m: ui.console.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: ui.console.errors.append(f"script error: {e}"))
        page.goto(f"{ui.url}/ui/#/topology")
        page.fill("#token", token["token"])
        page.click("form.login button[type=submit]")
        page.wait_for_url(re.compile(r"#/tenants$"))
        page.wait_for_selector(f'tr[data-id="{mine["id"]}"]')
        assert page.locator(f'tr[data-id="{other["id"]}"]').count() == 0
        assert page.locator("#nav a[data-page=topology]").is_hidden()
        assert page.locator("#bind-port").count() == 0            # binding is the admin's
        page.evaluate("location.hash = '#/topology'")               # an admin page: back to tenants
        page.wait_for_url(re.compile(r"#/tenants$"))
        playwright_api.expect(page.locator("#status")).to_have_text("live")
    finally:
        context.close()
        with ui.api() as api:
            for network in (mine, other):
                api.delete(f"/v2.0/networks/{network['id']}")
            api.delete(f"/v2.0/tokens/{token['id']}")
    ui.console.check()


def test_a_narrow_screen_has_no_page_wide_scrolling(ui):
    page = ui.page
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        ui.go("#/topology")
        page.wait_for_selector("svg.map g.switch", state="attached")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, width
        ui.shot("topology-narrow")
    finally:
        page.set_viewport_size({"width": 1280, "height": 800})
    ui.console.check()


def test_a_stopped_controller_shows_as_unreachable_and_the_page_comes_back_with_it(ui):
    page = ui.page
    ui.go("#/topology")
    playwright_api.expect(page.locator("#status")).to_have_text("live")
    assert ui.controller.stop() == 0
    playwright_api.expect(page.locator("#status")).to_have_text("controller unreachable", timeout=15_000)
    playwright_api.expect(page.locator("#banner")).to_be_visible()
    ui.shot("controller-unreachable")
    ui.controller.start()
    playwright_api.expect(page.locator("#status")).to_have_text("live", timeout=30_000)
    playwright_api.expect(page.locator("#banner")).to_be_hidden()
    for switch in SWITCHES:
        page.wait_for_selector(f'svg.map g.switch.up[data-dpid="{dpid(switch)}"]', state="attached", timeout=60_000)
    # while it was down, the browser's reconnection attempts failed: connection errors, nothing else
    refused = [e for e in ui.console.errors if "ERR_CONNECTION_REFUSED" in e or "ERR_EMPTY_RESPONSE" in e]
    ui.console.errors = [e for e in ui.console.errors if e not in refused]
    ui.console.check()
