"""Bringing a data directory into each data state, waiting on the server's own figures.

hot        every event in memory (no flush, no compaction)
flushed    every event in several Parquet flushes (level 0), compaction off
merged     the flushed directory after compaction (no level-0 file left, merges_pending 0)
mixed      merged files, level-0 flushes and a hot tail at once, overlapping in time
ingesting  a background thread ingests live events (flushes and merges run) while queries run
"""

import glob
import json
import os
import random
import threading
import time

from server import Client, HarnessError, Server

NO_FLUSH = ["--flush-seconds", "3600", "--flush-rows", "100000000"]
NO_MERGE = ["--compaction-seconds", "0"]


def catalog_levels(data_dir, dataset):
    """[level of each committed segment] from DATA/catalog/p*.json (ARCHITECTURE.md)."""
    levels = []
    for path in glob.glob(os.path.join(data_dir, "catalog", "p*.json")):
        with open(path, encoding="utf-8") as f:
            cat = json.load(f)
        d = cat.get("datasets", {}).get(dataset)
        if d:
            levels += [s.get("level", 0) for s in d.get("segments", [])]
    return levels


class States:
    def __init__(self, run):
        self.run = run  # differential.Run: dataset, seed, workdir, log, binary
        ds = run.ds
        self.ds = ds
        r = random.Random(f"{run.seed}:states")
        self.rng = r
        n = len(ds.items)
        self.flush_rows = str(max(150, n // r.choice([5, 7, 9])))
        self.target = r.choice(["33554432", "262144", "65536"])
        self.batch = r.choice([500, 1000, 2500])
        self.flushed_dir = None

    # -- helpers ---------------------------------------------------------------------------
    def server(self, name, flags, data_dir=None):
        data_dir = data_dir or os.path.join(self.run.workdir, name)
        return Server(self.run.binary, data_dir, flags, os.path.join(self.run.workdir, f"{name}.stderr"),
                      self.run.log).start()

    def load(self, srv, dataset, lo, hi, batch=None):
        """Sends static items [lo, hi) and checks each item's status against the model."""
        ds = self.ds
        i = lo
        while i < hi:
            j = min(hi, i + (batch or self.batch))
            statuses = srv.ingest(dataset, ds.items[i:j])
            for k, st in enumerate(statuses):
                want = 202 if ds.expect_ok[i + k] else 400
                if st.get("status") != want:
                    raise HarnessError(
                        f"ingest of item seq {i + k} answered {st}, expected status {want}: "
                        f"{json.dumps(ds.items[i + k], allow_nan=True)[:800]}")
            i = j

    def accepted(self, lo, hi):
        return sum(1 for ok in self.ds.expect_ok[lo:hi] if ok)

    def load_one(self, srv):
        """The small datasets of the regression cases: diff-one and diff-fixed."""
        self.load(srv, self.run.one, 0, self.run.one_items)
        statuses = srv.ingest(self.run.fixed, self.run.fixed_items)
        if any(s.get("status") != 202 for s in statuses):
            raise HarnessError(f"ingest of the fixed events answered {statuses}")
        self.wait_rows(srv, self.run.one, self.accepted(0, self.run.one_items))
        self.wait_rows(srv, self.run.fixed, len(self.run.fixed_items))

    @staticmethod
    def wait_rows(srv, dataset, want):
        """An acknowledged batch is applied to the hot tail a little later (OPERATIONS.md
        "Freshness"; FINDINGS.md 8): wait until the listing counts it."""
        srv.wait_for(dataset, f"{want} events in {dataset}", lambda d: d["rows"] == want)

    def stop_settled(self, srv, upto):
        """SIGTERM once the store has applied every event of [0, upto) it acknowledged: the
        shutdown flush writes what the store has applied, and acked records it had not yet
        consumed stay in the log and are replayed into the hot tail at the next start
        (OPERATIONS.md "Graceful shutdown"), which would leave the next state with hot rows."""
        self.wait_rows(srv, self.run.main, self.accepted(0, upto))
        srv.stop()

    def cut(self, frac):
        return int(len(self.ds.items) * frac)

    # -- states ----------------------------------------------------------------------------
    def hot(self):
        n = len(self.ds.items)
        srv = self.server("hot", NO_FLUSH + NO_MERGE)
        self.load(srv, self.run.main, 0, n)
        self.load_one(srv)
        want = self.accepted(0, n)
        srv.wait_for(self.run.main, f"all {want} events in the hot tail",
                     lambda d: d["hot_rows"] == want and d["segments"] == 0)
        return srv

    def build_flushed(self, name):
        n = len(self.ds.items)
        flags = ["--flush-seconds", "3600", "--flush-rows", self.flush_rows] + NO_MERGE
        small = max(50, int(self.flush_rows) // 2)
        # Four rounds, each ended by SIGTERM (which flushes): at least four files, and the
        # columns that only later events have are missing from the first files.
        cuts = [0, self.cut(0.3), self.cut(0.55), self.cut(0.8), n]
        for k in range(4):
            srv = self.server(name, flags)
            self.load(srv, self.run.main, cuts[k], cuts[k + 1], small)
            if k == 3:
                self.load_one(srv)  # fewer than --flush-rows: one file at SIGTERM
            self.stop_settled(srv, cuts[k + 1])
        srv = self.server(name, flags)
        want = self.accepted(0, n)
        srv.wait_for(self.run.main, f"all {want} events in 2+ segments, none hot",
                     lambda d: d["hot_rows"] == 0 and d["segment_rows"] == want and d["segments"] >= 2)
        levels = catalog_levels(srv.data_dir, self.run.main)
        if any(levels):
            raise HarnessError(f"compaction is off but the catalog has merged segments: {levels}")
        self.run.log(f"  {len(levels)} flushed segments (--flush-rows {self.flush_rows})")
        return srv

    def flushed(self):
        srv = self.build_flushed("flushed")
        self.flushed_dir = srv.data_dir
        return srv

    def merge_flags(self):
        return ["--compaction-seconds", "1", "--compaction-grace-seconds", "0",
                "--compaction-target-bytes", self.target]

    def wait_merged(self, srv, dataset, want_rows, what):
        def done(d):
            if d["merges_pending"] != 0 or d["hot_rows"] != 0 or d["segment_rows"] != want_rows:
                return False
            levels = catalog_levels(srv.data_dir, dataset)
            return levels and 0 not in levels
        srv.wait_for(dataset, what, done)
        return catalog_levels(srv.data_dir, dataset)

    def merged(self):
        n = len(self.ds.items)
        if self.flushed_dir is None:
            self.build_flushed("merged").stop()
            data_dir = os.path.join(self.run.workdir, "merged")
        else:
            data_dir = self.flushed_dir  # the flushed state is done with it
        before = catalog_levels(data_dir, self.run.main)
        srv = self.server("merged", ["--flush-seconds", "3600", "--flush-rows", self.flush_rows]
                          + self.merge_flags(), data_dir)
        levels = self.wait_merged(srv, self.run.main, self.accepted(0, n),
                                  "compaction to merge every flush (merges_pending 0, no level-0 file)")
        self.run.log(f"  {len(before)} flushes merged into {len(levels)} segments, levels {sorted(set(levels))}"
                     f" (--compaction-target-bytes {self.target})")
        return srv

    def mixed(self):
        n = len(self.ds.items)
        a1, a2, b1, b2 = self.cut(0.2), self.cut(0.4), self.cut(0.55), self.cut(0.75)
        few = ["--flush-seconds", "3600", "--flush-rows", str(max(100, a2 // 4))]
        small = max(50, a2 // 8)
        srv = self.server("mixed", few + NO_MERGE)
        self.load(srv, self.run.main, 0, a1, small)
        self.stop_settled(srv, a1)
        srv = self.server("mixed", few + NO_MERGE)
        self.load(srv, self.run.main, a1, a2, small)
        self.stop_settled(srv, a2)
        srv = self.server("mixed", few + self.merge_flags())
        levels = self.wait_merged(srv, self.run.main, self.accepted(0, a2), "the first 40 % to be merged")
        srv.stop()
        srv = self.server("mixed", NO_FLUSH + NO_MERGE)
        self.load(srv, self.run.main, a2, b1)
        self.stop_settled(srv, b1)
        srv = self.server("mixed", NO_FLUSH + NO_MERGE)
        self.load(srv, self.run.main, b1, b2)
        self.load_one(srv)
        self.stop_settled(srv, b2)
        srv = self.server("mixed", NO_FLUSH + NO_MERGE)
        self.load(srv, self.run.main, b2, n)
        hot, seg = self.accepted(b2, n), self.accepted(0, b2)
        srv.wait_for(self.run.main, f"{seg} events in segments and {hot} hot",
                     lambda d: d["hot_rows"] == hot and d["segment_rows"] == seg)
        levels = catalog_levels(srv.data_dir, self.run.main)
        if 0 not in levels or not any(levels):
            raise HarnessError(f"mixed state needs merged and flushed segments, catalog levels: {levels}")
        self.run.log(f"  segments by level: { {lv: levels.count(lv) for lv in sorted(set(levels))} }, "
                     f"{hot} events hot")
        return srv

    def ingesting(self):
        n = len(self.ds.items)
        flags = ["--flush-seconds", "1", "--flush-rows", str(max(100, n // 20))] + self.merge_flags()
        srv = self.server("ingesting", flags)
        self.load(srv, self.run.main, 0, n)
        self.load_one(srv)
        want = self.accepted(0, n)
        srv.wait_for(self.run.main, f"{want} static events", lambda d: d["rows"] == want)
        return srv


class LiveIngest(threading.Thread):
    """Keeps ingesting live events into the dataset until stopped; watches flushes and merges."""

    def __init__(self, srv, ds, dataset, seed):
        super().__init__(daemon=True)
        self.srv, self.ds, self.dataset, self.seed = srv, ds, dataset, seed
        self.stop_flag = threading.Event()
        self.started_one = threading.Event()
        self.sent, self.batches, self.error = 0, 0, None
        self.flushes = self.merges = 0

    def run(self):
        r = random.Random(f"{self.seed}:live-batches")
        gen = self.ds.live_items(self.seed)
        client = Client(self.srv.port)
        last_levels = None
        try:
            while not self.stop_flag.is_set():
                # A steady trickle (about 200 events/s): with --flush-rows n/20 a flush every
                # second or so and merges all along, yet the dataset does not outgrow the queries.
                batch = [next(gen) for _ in range(r.randint(20, 100))]
                statuses = self.srv.ingest(self.dataset, batch, client)
                bad = [s for s in statuses if s.get("status") != 202]
                if bad:
                    raise HarnessError(f"live ingest refused events: {bad[:3]}")
                self.sent += len(batch)
                self.batches += 1
                self.started_one.set()
                if self.batches % 5 == 0:
                    levels = catalog_levels(self.srv.data_dir, self.dataset)
                    if last_levels is not None:
                        if levels.count(0) > last_levels.count(0) or len(levels) > len(last_levels):
                            self.flushes += 1
                        if sum(1 for x in levels if x) != sum(1 for x in last_levels if x) or \
                                levels.count(0) < last_levels.count(0):
                            self.merges += 1
                    last_levels = levels
                self.stop_flag.wait(0.05 + len(batch) / 250)
        except Exception as e:  # reported by the caller
            self.error = e
            self.started_one.set()
        finally:
            client.close()

    def halt(self):
        self.stop_flag.set()
        self.join(timeout=120)
        if self.is_alive():
            raise HarnessError("the live ingest thread did not stop within 120 s")


def wait_started(live, timeout=120):
    if not live.started_one.wait(timeout):
        raise HarnessError(f"the live ingest thread sent nothing within {timeout} s")
    if live.error:
        raise HarnessError(f"live ingest failed: {live.error}")
    time.sleep(0)
