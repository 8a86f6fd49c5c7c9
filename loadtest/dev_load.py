#!/usr/bin/env python3
"""End-to-end load test of `sendgate dev` (Python 3.11 standard library only).

Starts `target/release/sendgate dev --config <generated toml>` on free loopback ports with
report events written to a JSONL file (stdout off), waits for /readyz, posts N jobs as NDJSON
batches from several poster threads, tails the reports file until every job id has a final
event (or a timeout), sends SIGTERM and checks the exit code. Prints jobs/s end to end, the
latency from a batch's 202 to each job's final report, the daemon's peak RSS, its CPU use, and
whether every job got exactly one final report.

Exit status: 0 when every job got exactly one final and the daemon exited 0 after SIGTERM,
1 otherwise, 2 for bad arguments or a daemon that would not start.

    python3 loadtest/dev_load.py                      # 100,000 jobs, defaults
    python3 loadtest/dev_load.py --jobs 20000 --json  # machine-readable summary on stdout
    python3 loadtest/dev_load.py --binds 4 --window 512 --max-in-flight 50000
    python3 loadtest/dev_load.py --channel whatsapp   # WhatsApp template jobs, statuses by webhook
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------------------------
# Jobs


def _texts() -> dict[str, list[str]]:
    """Message texts by kind; each kind has a few variants so bodies are not all alike."""
    return {
        # Plain ASCII, one GSM-7 segment.
        "short": [
            "Your code is {n}",
            "Order {n} has shipped",
            "Reminder: appointment #{n} tomorrow at 10:00",
        ],
        # GSM-7 with extension characters (each costs two septets): 2-3 segments.
        "gsm7long": [
            "Black Friday at ACME: €5 off [today only] with code {{BF-{n}}} - reply STOP to opt out. "
            "Offer valid for one order per customer [terms: acme.example/bf] {{limited stock}} €€€ "
            "and free delivery over €50 [all week].",
            "Your invoice {n}: total €129.90 [VAT incl.] {{due in 14 days}} - pay at acme.example/pay "
            "or by transfer; questions? call [+44 20 7946 0000] {{Mon-Fri 9-17}} | ref ~{n}~ \\ ^thanks^",
        ],
        # Cyrillic: UCS-2, 2-3 segments.
        "cyrillic": [
            "Ваш заказ {n} отправлен. Трек-номер для отслеживания появится в личном кабинете в течение "
            "часа. Спасибо, что выбрали нас! Вопросы — в чате поддержки.",
            "Напоминаем: запись №{n} завтра в 10:00. Если планы изменились, ответьте ОТМЕНА на это "
            "сообщение или позвоните нам. Хорошего дня!",
        ],
        # Emoji: UCS-2 with surrogate pairs.
        "emoji": [
            "Your order {n} is on its way 🚚📦 thanks for shopping with us 🎉😊",
            "🔥 Flash sale 🔥 {n}: 30% off everything today only ⏰ see you soon 👋🛍️",
        ],
    }


def wa_number(k: int) -> str:
    """The k-th WhatsApp phone number id the load is spread over (Meta caps each number)."""
    return f"1065403522{k:05d}"


def make_bodies(n_jobs: int, batch: int, run_id: str, kinds: list[str], channel: str = "sms", numbers: int = 1) -> tuple[list[bytes], list[list[str]]]:
    """NDJSON bodies and, for each, its job ids; built before the clock starts. `whatsapp`:
    template jobs spread round-robin over `numbers` phone number ids."""
    texts = _texts()
    by_kind = [texts[k] for k in kinds]
    bodies: list[bytes] = []
    ids: list[list[str]] = []
    for start in range(0, n_jobs, batch):
        lines = []
        batch_ids = []
        for i in range(start, min(start + batch, n_jobs)):
            job_id = f"lt-{run_id}-{i:07d}"
            kind_texts = by_kind[i % len(by_kind)]
            text = kind_texts[(i // len(by_kind)) % len(kind_texts)].format(n=i)
            if channel == "whatsapp":
                job = {
                    "id": job_id,
                    "tenant": "loadtest",
                    "channel": "whatsapp",
                    "from": wa_number(i % numbers),
                    "to": f"+49151{i % 100_000_000:08d}",
                    "template": {"name": "order_shipped", "language": "en_US", "params": [str(i)]},
                    "meta": {"n": str(i)},
                }
            else:
                job = {
                    "id": job_id,
                    "tenant": "loadtest",
                    "channel": "sms",
                    "to": f"+7916{i % 10_000_000:07d}",
                    "text": text,
                    "meta": {"n": str(i)},
                }
            lines.append(json.dumps(job, ensure_ascii=False, separators=(",", ":")))
            batch_ids.append(job_id)
        bodies.append(("\n".join(lines) + "\n").encode())
        ids.append(batch_ids)
    return bodies, ids


# ---------------------------------------------------------------------------------------------
# The daemon


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string for our paths


def write_config(path: Path, a: argparse.Namespace, listen: str, metrics: str, reports: Path) -> str:
    cfg = f"""# Generated by loadtest/dev_load.py
[server]
listen = {toml_str(listen)}
metrics_listen = {toml_str(metrics)}
drain_timeout = {toml_str(a.drain_timeout)}
job_history_ttl = {toml_str(a.job_history_ttl)}

[pipeline]
max_in_flight = {a.max_in_flight}
batch_size = {a.batch_size}

[reports]
stdout = false
file = {toml_str(str(reports))}
"""
    if a.channel == "whatsapp":
        cfg += f"""
# The embedded Cloud API simulator; statuses come back through /v1/webhooks/wa.
[providers.wa]
kind = "whatsapp_cloud"
base_url = "embedded-sim"
channels = ["whatsapp"]
number_tps = 1000
concurrency = {a.wa_concurrency}
receipt_timeout = {toml_str(a.receipt_timeout)}

[dev.provider_sim]
status_delay = {toml_str(a.status_delay)}
outcome_mix = "read=100"
webhook_batch = {a.webhook_batch}
push_concurrency = {a.push_concurrency}
queue_capacity = {a.sim_queue}
"""
        path.write_text(cfg)
        return cfg
    cfg += f"""
[providers.smsc-a]
kind = "smpp"
address = "embedded-sim"
system_id = "sendgate"
password = "dev"
channels = ["sms"]
binds = {a.binds}
window = {a.window}
default_from = "sendgate"
receipt_timeout = {toml_str(a.receipt_timeout)}

[dev.smsc_sim]
receipt_delay = {toml_str(a.receipt_delay)}
outcome_mix = "delivered=100"
record_messages = false
"""
    path.write_text(cfg)
    return cfg


def http_get(addr: str, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_ready(proc: subprocess.Popen, addr: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode} before it was ready")
        try:
            status, body = http_get(addr, "/readyz")
            if status == 200:
                return
            last = f"{status} {body[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise RuntimeError(f"/readyz not 200 after {timeout}s: {last}")


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS in KiB."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def runqueue_wait(pid: int) -> float:
    """Seconds the daemon's threads spent runnable but waiting for a CPU (schedstat field 2):
    how much other processes on the machine held it back."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user+system) per thread name, summed over threads of that name."""
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        # comm may contain spaces and parens: it runs from the first "(" to the last ")".
        comm = s[s.index("(") + 1 : s.rindex(")")]
        rest = s[s.rindex(")") + 2 :].split()
        utime, stime = int(rest[11]), int(rest[12])
        out[comm] = out.get(comm, 0.0) + (utime + stime) / CLK_TCK
    return out


class Sampler(threading.Thread):
    """Samples the daemon's memory every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.1):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.hwm_kib = 0
        self.rss_max_kib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def sample(self) -> None:
        st = proc_status(self.pid)
        self.hwm_kib = max(self.hwm_kib, st.get("VmHWM", 0))
        self.rss_max_kib = max(self.rss_max_kib, st.get("VmRSS", 0))


STATUSES_METRIC = "sendgate_provider_sim_statuses_total"


def metric_sum(text: str, name: str) -> float:
    """The sum of every series of `name` in a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                pass
    return total


class StatusSampler(threading.Thread):
    """Samples, every `interval` seconds, how many statuses the webhook intake has taken (the
    embedded simulator counts each status its POST got a 2xx for)."""

    def __init__(self, metrics_addr: str, interval: float = 0.25):
        super().__init__(daemon=True)
        self.addr, self.interval = metrics_addr, interval
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                _, page = http_get(self.addr, "/metrics", timeout=2)
                self.samples.append((time.monotonic(), metric_sum(page.decode(errors="replace"), STATUSES_METRIC)))
            except OSError:
                pass
            self.stop.wait(self.interval)

    def rates(self) -> dict:
        """Statuses taken; the mean rate from the first to the last one taken, and the highest
        rate over any window of about a second."""
        s = self.samples
        total = s[-1][1] if s else 0.0
        moving = [(t, v) for t, v in s if 0 < v]
        first = next(((t, v) for t, v in s if v > 0), None)
        last = next(((t, v) for t, v in s if v >= total), None)
        mean = None
        if first and last and last[0] > first[0]:
            # The window starts one sample before the first count seen.
            i = s.index(first)
            t0, v0 = s[i - 1] if i > 0 else first
            mean = (last[1] - v0) / (last[0] - t0)
        peak = 0.0
        for i, (t, v) in enumerate(s):
            j = i
            while j + 1 < len(s) and s[j][0] - t < 1.0:
                j += 1
            if s[j][0] > t:
                peak = max(peak, (s[j][1] - v) / (s[j][0] - t))
        return {"statuses": int(total), "mean_per_second": round(mean, 1) if mean else None, "peak_per_second": round(peak, 1), "samples": len(moving)}


# ---------------------------------------------------------------------------------------------
# Posting


@dataclass
class BatchResult:
    index: int
    sent_at: float = 0.0  # wall clock (time.time()), comparable with report `at`
    acked_at: float = 0.0  # when its 202 was read
    status: int = 0
    accepted: int = 0
    rejected: list = field(default_factory=list)
    error: str | None = None


def poster(addr: str, bodies: list[bytes], work: "queue.Queue[int]", results: list[BatchResult], timeout: float) -> None:
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"content-type": "application/x-ndjson"}
    while True:
        try:
            i = work.get_nowait()
        except queue.Empty:
            break
        res = results[i]
        res.sent_at = time.time()
        try:
            conn.request("POST", "/v1/jobs", body=bodies[i], headers=headers)
            r = conn.getresponse()
            body = r.read()
            res.acked_at = time.time()
            res.status = r.status
            if r.status == 202:
                d = json.loads(body)
                res.accepted = d.get("accepted", 0)
                res.rejected = d.get("rejected", [])
            else:
                res.error = f"HTTP {r.status}: {body[:300]!r}"
        except (OSError, http.client.HTTPException, ValueError) as e:
            res.acked_at = time.time()
            res.error = f"{type(e).__name__}: {e}"
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    conn.close()


# ---------------------------------------------------------------------------------------------
# Reports


class ReportTail:
    """Reads the reports file incrementally; keeps, per job id, its final events."""

    def __init__(self, path: Path):
        self.path = path
        self.f = None
        self.partial = b""
        self.lines = 0
        # job id -> number of finals; first final's `at` (string), event, segments
        self.finals: dict[str, int] = {}
        self.first_final: dict[str, tuple[str, str, int]] = {}
        self.events: dict[str, int] = {}
        self.bad_lines = 0

    def poll(self) -> int:
        """Reads what was appended; returns the number of new lines."""
        if self.f is None:
            try:
                self.f = open(self.path, "rb")
            except FileNotFoundError:
                return 0
        chunk = self.f.read()
        if not chunk:
            return 0
        data = self.partial + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self.partial = data
            return 0
        self.partial = data[cut + 1 :]
        n = 0
        for line in data[:cut].split(b"\n"):
            if line:
                self._line(line)
                n += 1
        self.lines += n
        return n

    def _line(self, line: bytes) -> None:
        # Fast path: serde writes fields in declaration order and escapes quotes inside
        # strings, so `"final":true` and `"at":"` can only be the fields themselves.
        ev = _between(line, b'"event":"', b'"')
        if ev is None:
            self._slow(line)
            return
        self.events[ev] = self.events.get(ev, 0) + 1
        if b'"final":true' not in line:
            return
        job_id = _between(line, b'{"job_id":"', b'"')
        at = _between(line, b'"at":"', b'"')
        if job_id is None or at is None:
            self._slow(line)
            return
        seg = _between(line, b'"segments":', b",")
        self._final(job_id, at, ev, int(seg) if seg and seg.isdigit() else 0)

    def _slow(self, line: bytes) -> None:
        try:
            r = json.loads(line)
        except ValueError:
            self.bad_lines += 1
            return
        if not isinstance(r, dict) or "job_id" not in r:
            self.bad_lines += 1
            return
        ev = str(r.get("event"))
        self.events[ev] = self.events.get(ev, 0) + 1
        if r.get("final") is True:
            self._final(str(r["job_id"]), str(r.get("at", "")), ev, int(r.get("segments") or 0))

    def _final(self, job_id: str, at: str, ev: str, segments: int) -> None:
        c = self.finals.get(job_id, 0)
        self.finals[job_id] = c + 1
        if c == 0:
            self.first_final[job_id] = (at, ev, segments)

    def close(self) -> None:
        if self.f:
            self.f.close()


def _between(line: bytes, start: bytes, end: bytes) -> str | None:
    i = line.find(start)
    if i < 0:
        return None
    i += len(start)
    j = line.find(end, i)
    if j < 0:
        return None
    return line[i:j].decode()


def parse_at(s: str) -> float:
    """RFC 3339 (`2026-11-21T06:00:01.532123456Z`) → epoch seconds; fraction cut to µs."""
    if s.endswith("Z"):
        s, tz = s[:-1], "+00:00"
    else:
        s, tz = s[:-6], s[-6:]
    if "." in s:
        head, frac = s.split(".", 1)
        s = f"{head}.{frac[:6]:0<6}"
    return datetime.fromisoformat(s + tz).timestamp()


def percentile(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, round(p / 100 * (len(sorted_vals) - 1))))
    return sorted_vals[k]


# ---------------------------------------------------------------------------------------------
# The run


def run(a: argparse.Namespace) -> tuple[dict, int]:
    binary = Path(a.binary)
    if not binary.is_file():
        raise SystemExit(f"error: {binary} not found; build it with `cargo build --release`")
    kinds = [k.strip() for k in a.texts.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in _texts()]
    if unknown or not kinds:
        raise SystemExit(f"error: --texts: unknown kind(s) {unknown}; use {','.join(_texts())}")

    work_dir = Path(a.out_dir) if a.out_dir else Path(tempfile.mkdtemp(prefix="sendgate-load-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    reports = work_dir / "reports.jsonl"
    if reports.exists():
        reports.unlink()
    listen, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    cfg_path = work_dir / "sendgate.toml"
    write_config(cfg_path, a, listen, metrics, reports)
    run_id = f"{int(time.time()):x}{os.getpid():x}{random.getrandbits(16):04x}"

    what = f"WhatsApp templates from {a.numbers} numbers" if a.channel == "whatsapp" else ", ".join(kinds)
    log(a, f"building {a.jobs} jobs ({what}) in batches of {a.batch} ...")
    bodies, batch_ids = make_bodies(a.jobs, a.batch, run_id, kinds, a.channel, a.numbers)
    all_ids = {i for ids in batch_ids for i in ids}
    body_bytes = sum(map(len, bodies))

    daemon_log = open(work_dir / "daemon.log", "wb")
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    proc = subprocess.Popen(
        [str(binary), "dev", "--config", str(cfg_path)],
        stdout=daemon_log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    sampler = Sampler(proc.pid)
    sampler.start()
    summary: dict = {
        "jobs": a.jobs,
        "batch": a.batch,
        "concurrency": a.concurrency,
        "texts": kinds,
        "channel": a.channel,
        "config": {
            "binds": a.binds,
            "window": a.window,
            "max_in_flight": a.max_in_flight,
            "batch_size": a.batch_size,
            "receipt_delay": a.receipt_delay,
            "drain_timeout": a.drain_timeout,
            "job_history_ttl": a.job_history_ttl,
            **(
                {"numbers": a.numbers, "wa_concurrency": a.wa_concurrency, "status_delay": a.status_delay, "webhook_batch": a.webhook_batch, "push_concurrency": a.push_concurrency}
                if a.channel == "whatsapp"
                else {}
            ),
        },
        "work_dir": str(work_dir),
    }
    try:
        try:
            wait_ready(proc, listen, a.ready_timeout)
        except RuntimeError as e:
            print(f"error: {e}; daemon log: {work_dir / 'daemon.log'}", file=sys.stderr)
            print((work_dir / "daemon.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            return summary, 2
        log(a, f"daemon up (pid {proc.pid}) on {listen}; posting {a.jobs} jobs ({body_bytes / 1e6:.1f} MB) with {a.concurrency} posters")

        statuses = StatusSampler(metrics)
        if a.channel == "whatsapp":
            statuses.start()
        cpu0 = thread_cpu(proc.pid)
        wait0 = runqueue_wait(proc.pid)
        load0 = os.getloadavg()[0]
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        t0_mono = time.monotonic()

        results = [BatchResult(i) for i in range(len(bodies))]
        work: queue.Queue[int] = queue.Queue()
        for i in range(len(bodies)):
            work.put(i)
        posters = [
            threading.Thread(target=poster, args=(listen, bodies, work, results, a.post_timeout), daemon=True)
            for _ in range(max(1, a.concurrency))
        ]
        for t in posters:
            t.start()

        tail = ReportTail(reports)
        deadline = None
        last_progress = time.monotonic()
        died = False
        missing_at_timeout = 0
        while True:
            tail.poll()
            posting = any(t.is_alive() for t in posters)
            if not posting and deadline is None:
                deadline = time.monotonic() + a.timeout
                log(a, f"all batches posted in {time.monotonic() - t0_mono:.2f}s; waiting for finals")
            reads_in = a.channel != "whatsapp" or tail.events.get("read", 0) >= len(all_ids)
            if not posting and len(tail.finals) >= len(all_ids) and reads_in and all_ids.issubset(tail.finals.keys()):
                break
            if proc.poll() is not None:
                died = True
                print(f"error: daemon exited with {proc.returncode} during the run", file=sys.stderr)
                break
            if deadline is not None and time.monotonic() > deadline:
                missing_at_timeout = len(all_ids) - len(all_ids & tail.finals.keys())
                print(f"timeout: {missing_at_timeout} jobs without a final {a.timeout}s after the last 202; stopping the daemon", file=sys.stderr)
                break
            if a.progress and time.monotonic() - last_progress > 2:
                last_progress = time.monotonic()
                log(a, f"  finals {len(tail.finals)}/{len(all_ids)}, report lines {tail.lines}, RSS {sampler.rss_max_kib / 1024:.0f} MiB")
            time.sleep(0.2)
        t_done_mono = time.monotonic()
        cpu1 = thread_cpu(proc.pid)
        wait1 = runqueue_wait(proc.pid)
        load1 = os.getloadavg()[0]
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        sampler.sample()

        # Duplicate finals would show up after the first one: give them a moment, then stop the
        # daemon and read what its shutdown flushed.
        if not died:
            time.sleep(a.settle)
            try:
                _, metrics_text = http_get(metrics, "/metrics", timeout=5)
                (work_dir / "metrics.txt").write_bytes(metrics_text)
            except OSError:
                pass
        sampler.sample()
        t_term = time.monotonic()
        exit_code = proc.poll()
        if exit_code is None:
            proc.send_signal(signal.SIGTERM)
            try:
                exit_code = proc.wait(timeout=a.shutdown_timeout)
            except subprocess.TimeoutExpired:
                print(f"error: daemon still running {a.shutdown_timeout}s after SIGTERM; killing it", file=sys.stderr)
                proc.kill()
                proc.wait()
                exit_code = None
        shutdown_s = time.monotonic() - t_term
        sampler.stop.set()
        statuses.stop.set()
        tail.poll()
        tail.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        daemon_log.close()

    # --- numbers ---
    posted = [r for r in results if r.sent_at]
    first_post = min((r.sent_at for r in posted), default=float("nan"))
    last_ack = max((r.acked_at for r in posted), default=float("nan"))
    errors = [r.error for r in results if r.error]
    accepted = sum(r.accepted for r in results)
    rejected = sum(len(r.rejected) for r in results)

    ack_of = {}
    sent_of = {}
    for r, ids in zip(results, batch_ids):
        if r.status == 202:
            for i in ids:
                ack_of[i] = r.acked_at
                sent_of[i] = r.sent_at
    lat_ack, lat_sent, final_ats = [], [], []
    for job_id, (at, _ev, _seg) in tail.first_final.items():
        if job_id not in all_ids:
            continue
        t = parse_at(at)
        final_ats.append(t)
        if job_id in ack_of:
            lat_ack.append(t - ack_of[job_id])
            lat_sent.append(t - sent_of[job_id])
    lat_ack.sort()
    lat_sent.sort()
    last_final = max(final_ats, default=float("nan"))
    finals_of_ours = {i: c for i, c in tail.finals.items() if i in all_ids}
    zero = len(all_ids) - len(finals_of_ours)
    multi = sum(1 for c in finals_of_ours.values() if c > 1)
    strangers = len(tail.finals) - len(finals_of_ours)
    final_kinds: dict[str, int] = {}
    segments = 0
    for job_id, (_at, ev, seg) in tail.first_final.items():
        if job_id in all_ids:
            final_kinds[ev] = final_kinds.get(ev, 0) + 1
            segments += seg
    e2e_s = last_final - first_post
    ingest_s = last_ack - first_post
    daemon_cpu = {k: round(cpu1.get(k, 0.0) - cpu0.get(k, 0.0), 2) for k in cpu1}
    daemon_cpu = {k: v for k, v in sorted(daemon_cpu.items(), key=lambda kv: -kv[1]) if v > 0}
    wall = t_done_mono - t0_mono
    gen_cpu = (self1.ru_utime - self0.ru_utime) + (self1.ru_stime - self0.ru_stime)
    exactly_once = zero == 0 and multi == 0 and not errors and accepted == a.jobs

    summary.update(
        {
            "accepted": accepted,
            "rejected": rejected,
            "post_errors": errors[:5],
            "post_error_count": len(errors),
            "ingest_seconds": round(ingest_s, 3),
            "ingest_jobs_per_second": round(accepted / ingest_s, 1) if ingest_s > 0 else None,
            "end_to_end_seconds": round(e2e_s, 3),
            "jobs_per_second": round(len(final_ats) / e2e_s, 1) if e2e_s > 0 else None,
            "segments": segments,
            "segments_per_second": round(segments / e2e_s, 1) if e2e_s > 0 else None,
            "latency_202_to_final_seconds": {
                "p50": round(percentile(lat_ack, 50), 4),
                "p90": round(percentile(lat_ack, 90), 4),
                "p99": round(percentile(lat_ack, 99), 4),
                "max": round(lat_ack[-1], 4) if lat_ack else None,
                "mean": round(statistics.fmean(lat_ack), 4) if lat_ack else None,
            },
            "latency_post_to_final_seconds": {
                "p50": round(percentile(lat_sent, 50), 4),
                "p99": round(percentile(lat_sent, 99), 4),
            },
            "peak_rss_mib": round(sampler.hwm_kib / 1024, 1),
            "max_sampled_rss_mib": round(sampler.rss_max_kib / 1024, 1),
            "daemon_cpu_seconds": round(sum(daemon_cpu.values()), 2),
            "daemon_cpu_us_per_job": round(sum(daemon_cpu.values()) / a.jobs * 1e6, 1),
            "webhook_intake": statuses.rates() if a.channel == "whatsapp" else None,
            "daemon_cpu_by_thread": daemon_cpu,
            "daemon_cpu_share_of_one_core": round(sum(daemon_cpu.values()) / wall, 2) if wall > 0 else None,
            "daemon_runqueue_wait_seconds": round(wait1 - wait0, 2),
            "loadavg_1m": [round(load0, 2), round(load1, 2)],
            "loadgen_cpu_seconds": round(gen_cpu, 2),
            "wall_seconds": round(wall, 2),
            "report_lines": tail.lines,
            "events": dict(sorted(tail.events.items())),
            "final_events": final_kinds,
            "jobs_without_final": zero,
            "jobs_with_multiple_finals": multi,
            "finals_for_unknown_ids": strangers,
            "unparseable_report_lines": tail.bad_lines,
            "jobs_without_final_at_timeout": missing_at_timeout,
            "exactly_once": exactly_once,
            "daemon_exit_code": exit_code,
            "shutdown_seconds": round(shutdown_s, 2),
        }
    )
    ok = exactly_once and exit_code == 0
    if not a.keep and ok and not a.out_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
        summary["work_dir"] = None
    return summary, 0 if ok else 1


def log(a: argparse.Namespace, msg: str) -> None:
    print(msg, file=sys.stderr if a.json else sys.stdout, flush=True)


def print_human(s: dict) -> None:
    c = s["config"]
    lat = s["latency_202_to_final_seconds"]
    print()
    if s["channel"] == "whatsapp":
        print(f"sendgate dev load test: {s['jobs']} WhatsApp template jobs, NDJSON batches of {s['batch']}, {s['concurrency']} posters")
        print(f"  config: numbers={c['numbers']} concurrency={c['wa_concurrency']} max_in_flight={c['max_in_flight']} batch_size={c['batch_size']} status_delay={c['status_delay']} webhook_batch={c['webhook_batch']} push_concurrency={c['push_concurrency']}")
    else:
        print(f"sendgate dev load test: {s['jobs']} jobs, NDJSON batches of {s['batch']}, {s['concurrency']} posters, texts {','.join(s['texts'])}")
        print(f"  config: binds={c['binds']} window={c['window']} max_in_flight={c['max_in_flight']} batch_size={c['batch_size']} receipt_delay={c['receipt_delay']}")
    print(f"  ingest:      {s['accepted']} accepted, {s['rejected']} rejected, {s['post_error_count']} failed POSTs in {s['ingest_seconds']:.2f}s ({s['ingest_jobs_per_second']} jobs/s)")
    for e in s["post_errors"]:
        print(f"    POST error: {e}")
    print(f"  end to end:  {s['jobs_per_second']} jobs/s  ({s['end_to_end_seconds']:.2f}s from first POST to last final; {s['segments']} segments, {s['segments_per_second']} segments/s)")
    print(f"  latency 202 -> final: p50 {lat['p50'] * 1000:.0f} ms, p90 {lat['p90'] * 1000:.0f} ms, p99 {lat['p99'] * 1000:.0f} ms, max {(lat['max'] or 0) * 1000:.0f} ms")
    print(f"  peak RSS:    {s['peak_rss_mib']} MiB (VmHWM)")
    if s.get("webhook_intake"):
        w = s["webhook_intake"]
        print(f"  webhook intake: {w['statuses']} statuses taken; {w['mean_per_second']} statuses/s mean from the first to the last, peak {w['peak_per_second']}/s over ~1 s")
    top = ", ".join(f"{k} {v:.1f}s" for k, v in list(s["daemon_cpu_by_thread"].items())[:6])
    print(f"  CPU:         {s['daemon_cpu_us_per_job']} µs per job; daemon {s['daemon_cpu_seconds']}s over {s['wall_seconds']}s wall ({s['daemon_cpu_share_of_one_core'] * 100:.0f}% of one core; {top}); load generator {s['loadgen_cpu_seconds']}s")
    print(f"  machine:     daemon threads waited {s['daemon_runqueue_wait_seconds']}s for a CPU (runnable, not running); load average {s['loadavg_1m'][0]} -> {s['loadavg_1m'][1]} on {os.cpu_count()} CPUs")
    print(f"  events:      {', '.join(f'{k}={v}' for k, v in s['events'].items())}")
    print(f"  jobs with 0 finals: {s['jobs_without_final']}, with >1 finals: {s['jobs_with_multiple_finals']}, finals for ids not sent: {s['finals_for_unknown_ids']}")
    if s["jobs_without_final_at_timeout"]:
        print(f"  note: {s['jobs_without_final_at_timeout']} jobs had no final when --timeout ran out; the counts above include what the daemon's shutdown drain reported")
    print(f"{'PASS' if s['exactly_once'] else 'FAIL'}: every job exactly one final")
    code = s["daemon_exit_code"]
    print(f"{'PASS' if code == 0 else 'FAIL'}: SIGTERM -> exit code {code} after {s['shutdown_seconds']}s")
    if s["work_dir"]:
        print(f"  files kept in {s['work_dir']} (sendgate.toml, reports.jsonl, daemon.log, metrics.txt)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--binary", default=str(REPO / "target/release/sendgate"), help="the sendgate binary")
    p.add_argument("--jobs", type=int, default=100_000, help="jobs to send")
    p.add_argument("--batch", type=int, default=1_000, help="jobs per POST (NDJSON lines)")
    p.add_argument("--concurrency", type=int, default=4, help="poster threads, each with its own keep-alive connection")
    p.add_argument("--texts", default="short,gsm7long,cyrillic,emoji", help="text kinds, used round-robin (sms)")
    p.add_argument("--channel", choices=["sms", "whatsapp"], default="sms", help="sms: text jobs to the SMPP simulator; whatsapp: template jobs to the Cloud API simulator, statuses by webhook")
    p.add_argument("--numbers", type=int, default=32, help="whatsapp: phone number ids the jobs are spread over (Meta allows each at most 1,000 msg/s)")
    g = p.add_argument_group("daemon config (written to the generated toml)")
    g.add_argument("--binds", type=int, default=4, help="providers.smsc-a.binds")
    g.add_argument("--window", type=int, default=8, help="providers.smsc-a.window")
    g.add_argument("--max-in-flight", type=int, default=5_000, help="pipeline.max_in_flight")
    g.add_argument("--batch-size", type=int, default=512, help="pipeline.batch_size")
    g.add_argument("--receipt-delay", default="100ms", help="dev.smsc_sim.receipt_delay")
    g.add_argument("--receipt-timeout", default="60s", help="providers.smsc-a.receipt_timeout")
    g.add_argument("--drain-timeout", default="10s", help="server.drain_timeout")
    g.add_argument("--job-history-ttl", default="1h", help="server.job_history_ttl")
    g.add_argument("--wa-concurrency", type=int, default=8, help="whatsapp: providers.wa.concurrency (requests in flight per number; the simulator answers in well under a millisecond, so a few keep a number at its 1,000/s)")
    g.add_argument("--status-delay", default="100ms", help="whatsapp: dev.provider_sim.status_delay")
    g.add_argument("--webhook-batch", type=int, default=100, help="whatsapp: dev.provider_sim.webhook_batch (statuses per POST)")
    g.add_argument("--push-concurrency", type=int, default=8, help="whatsapp: dev.provider_sim.push_concurrency")
    g.add_argument("--sim-queue", type=int, default=200_000, help="whatsapp: dev.provider_sim.queue_capacity")
    t = p.add_argument_group("timeouts")
    t.add_argument("--ready-timeout", type=float, default=30, help="seconds to wait for /readyz 200")
    t.add_argument("--post-timeout", type=float, default=300, help="socket timeout of one POST (it waits while the pipeline is full)")
    t.add_argument("--timeout", type=float, default=300, help="seconds after the last 202 to wait for every final")
    t.add_argument("--settle", type=float, default=1.0, help="seconds to keep reading after the last first final, to catch duplicates")
    t.add_argument("--shutdown-timeout", type=float, default=60, help="seconds to wait for exit after SIGTERM")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print a machine-readable summary (JSON) on stdout; progress goes to stderr")
    o.add_argument("--progress", action="store_true", help="print progress every 2 s")
    o.add_argument("--out-dir", help="keep config, reports, daemon log and metrics here (default: a temp dir, removed on success)")
    o.add_argument("--keep", action="store_true", help="keep the temp dir even on success")
    a = p.parse_args()
    if a.jobs < 1 or a.batch < 1 or a.numbers < 1:
        p.error("--jobs, --batch and --numbers must be >= 1")

    summary, code = run(a)
    if a.json:
        print(json.dumps(summary, indent=2))
    elif "exactly_once" in summary:
        print_human(summary)
    return code


if __name__ == "__main__":
    sys.exit(main())
