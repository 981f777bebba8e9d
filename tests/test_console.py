"""The web console in a real browser: Debian's headless Chromium driven by
Playwright opens each page against a running broker holding real data
(confluent-kafka produced it, a group committed) and checks what a person
sees: the topic and its placement, a message's key and value (JSON
pretty-printed, and markup in data shown as text, not run), a group's lag,
the brokers' shards, and the live throughput chart updating."""

import json
import shutil

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clients import create_topic

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOPIC = "console-orders"
GROUP = "console-group"
# Markup in a key: the console must show it as text.
ODD_KEY = "<script>window.pwned=1</script>"

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def console_broker(tmp_path_factory):
    """A two-shard broker: a 2-partition topic with 6 JSON messages (one with
    markup in its key) and a group 2 behind on partition 1."""
    from conftest import Broker
    d = tmp_path_factory.mktemp("console")
    b = Broker(d / "data", d, shards=2)
    b.start()
    create_topic(b.bootstrap, TOPIC, partitions=2)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    for i in range(6):
        key = ODD_KEY if i == 5 else f"order-{i}"
        p.produce(TOPIC, key=key, value=json.dumps({"order": i, "item": "kayak"}), partition=i % 2,
                  headers=[("trace", f"t{i}".encode())])
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(TOPIC, 1, 1)], asynchronous=False)
    c.close()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def page():
    if not shutil.which(CHROMIUM) and not shutil.os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        pg = browser.new_page()
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.errors = errors
        yield pg
        browser.close()


def open_page(page, broker, path):
    resp = page.goto(f"http://{broker.admin_addr}{path}", wait_until="load", timeout=30_000)
    assert resp.status == 200, f"{path}: {resp.status}: {page.inner_text('body')[:500]}"
    return resp


def test_overview_shows_the_cluster_and_a_live_throughput_chart(console_broker, page):
    """The overview shows the cluster id and brokers; the chart script polls and shows a rate, with no script errors."""
    open_page(page, console_broker, "/")
    assert page.title().startswith("Overview")
    assert len(page.inner_text("#cluster-id")) > 10
    assert "Brokers" in page.inner_text("main")
    page.wait_for_function("document.getElementById('rate-in').textContent.indexOf('/s') > 0", timeout=15_000)
    assert page.locator("canvas#chart").is_visible()
    assert page.errors == []


def test_topics_page_lists_the_topic_and_its_page_shows_partitions_on_shards(console_broker, page):
    """The topics list shows the topic; clicking it shows both partitions' leader on node 1 with a shard, offsets and configs."""
    open_page(page, console_broker, "/console/topics")
    assert TOPIC in page.inner_text("#topics")
    page.click(f"text={TOPIC}")
    page.wait_for_selector("#topic-name")
    assert page.inner_text("#topic-name") == TOPIC
    rows = page.locator("#partitions tr").all_inner_texts()
    assert len(rows) == 3, rows
    for row in rows[1:]:
        assert "node 1 / shard" in row
    # Partition 0 holds orders 0, 2, 4: log start 0, high watermark 3.
    cells = page.locator("#partitions tr").nth(1).locator("td").all_inner_texts()
    assert cells[0] == "0" and cells[4] == "0" and cells[5] == "3"
    assert "cleanup.policy" in page.inner_text("#configs")


def test_message_browser_shows_a_message_key_and_value(console_broker, page):
    """From offset 1 of partition 0 the browser shows order-2 and its JSON value pretty-printed, and its header."""
    open_page(page, console_broker, f"/console/topics/{TOPIC}/messages?partition=0&offset=1&format=json")
    first = page.locator("#messages tr.message").first
    assert first.locator("td.key").inner_text() == "order-2"
    assert first.locator("td.value").inner_text() == '{\n  "item": "kayak",\n  "order": 2\n}'
    assert "trace: t2" in first.inner_text()


def test_message_browser_form_reads_from_the_end_and_shows_markup_as_text(console_broker, page):
    """Choosing partition 1, "the end" and limit 1 in the form shows the last message, whose key is markup shown as text."""
    open_page(page, console_broker, f"/console/topics/{TOPIC}/messages")
    page.select_option("select[name=partition]", "1")
    page.select_option("select[name=mode]", "end")
    page.fill("input[name=limit]", "1")
    page.click("button[type=submit]")
    page.wait_for_url("**mode=end**")
    rows = page.locator("#messages tr.message")
    assert rows.count() == 1
    assert rows.first.locator("td.key").inner_text() == ODD_KEY
    assert '"order":5' in rows.first.locator("td.value").inner_text().replace(" ", "")
    assert page.evaluate("window.pwned") is None


def test_message_browser_shows_hex(console_broker, page):
    """As hex, the first key of partition 0 is the hex of order-0."""
    open_page(page, console_broker, f"/console/topics/{TOPIC}/messages?partition=0&from=start&format=hex&limit=1")
    assert page.locator("#messages tr.message td.key").first.inner_text() == b"order-0".hex()


def test_group_page_shows_the_lag(console_broker, page):
    """The groups list shows the group; its page shows lag 2 on partition 1 (committed 1, end 3) and total lag 2."""
    open_page(page, console_broker, "/console/groups")
    assert GROUP in page.inner_text("#groups")
    page.click(f"text={GROUP}")
    page.wait_for_selector("#lag")
    assert page.inner_text("#group-id") == GROUP
    assert page.inner_text("#total-lag") == "2"
    [row] = [r for r in page.locator("#lag tr").all() if r.locator("td").count() and r.locator("td").nth(1).inner_text() == "1"]
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == TOPIC and cells[2:5] == ["1", "3", "2"]


def test_brokers_page_shows_partitions_placed_on_shards(console_broker, page):
    """The brokers page lists node 1 with two shards, and the placement table puts each partition on one of them."""
    open_page(page, console_broker, "/console/brokers")
    assert "(controller)" in page.inner_text("#brokers")
    placement = page.locator("#placement tr").all_inner_texts()
    assert len(placement) == 3  # header + shard 0 + shard 1
    text = "\n".join(placement)
    assert f"{TOPIC}/0" in text and f"{TOPIC}/1" in text


def test_unknown_pages_say_so(console_broker, page):
    """An unknown topic's page is a 404 that names it."""
    resp = page.goto(f"http://{console_broker.admin_addr}/console/topics/nope", timeout=30_000)
    assert resp.status == 404
    assert "nope" in page.inner_text("main")
