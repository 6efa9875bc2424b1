"""Nothing lost, nothing silent: corrupted stores are caught with the chunk named, diverged training
never leaves a checkpoint, killed writers never leave a file that looks complete, a killed cache
resumes, full or read-only disks are named, and a real `snakemake` killed at each stage finishes
with `--rerun-incomplete` to the same bytes as an uninterrupted run."""

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
import zarr

from saeseeds.activations import checksums
from saeseeds.activations.caching import ActivationConfig, write_activations
from saeseeds.common.atomic import OutputError, atomic_write, write_parquet
from saeseeds.sae.batches import BatchPlan
from saeseeds.sae.coder import SaeConfig
from saeseeds.activations.store import StoreError, StoreWriter, open_store, write_store
from saeseeds.sae.train import TrainConfig, TrainingDiverged, train_sae, train_saes

ROOT = Path(__file__).resolve().parents[2]
D = 16


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # conftest: small forwards run faster on one thread


def rows(n, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal((n, D))).astype(np.float32)


def small_store(path, n=5000, chunk_rows=1000, **kw):
    writer = StoreWriter(path, n, D, dtype="float32", chunk_rows=chunk_rows)
    writer.append(rows(n, **kw))
    base = {"model": "m", "revision": "r", "dataset": "d", "hook": "h"}
    return writer.finish({**base, "n_train": n - 1000, "n_heldout": 1000})


# -- corruption of the activation store ---------------------------------------------------------------


def test_store_lists_a_checksum_per_chunk_that_sha256sum_accepts(tmp_path):
    store = small_store(tmp_path / "acts.zarr")
    listed = checksums.read_manifest(store.path)
    assert [name for _, name in listed] == [f"activations/c/{i}/0" for i in range(5)]
    proc = subprocess.run(["sha256sum", "--check", "--quiet", checksums.MANIFEST], cwd=store.path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert store.attrs["checksums"] == checksums.MANIFEST and store.attrs["complete"] is True
    assert not (store.path / checksums.RESUME).exists()
    open_store(store.path, verify=True)


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, problem",
    [
        (truncate, r"does not match its checksum \(\d+ bytes; truncated or altered\)"),
        (flip_byte, r"does not match its checksum \(\d+ bytes; truncated or altered\)"),
        (lambda p: p.unlink(), "is missing"),
    ],
    ids=["truncated", "altered", "deleted"],
)
def test_damaged_chunk_is_named_before_training_reads_it(tmp_path, damage, problem):
    store = small_store(tmp_path / "acts.zarr")
    damage(store.path / "activations" / "c" / "3" / "0")
    open_store(store.path)  # the metadata alone looks fine
    with pytest.raises(StoreError, match=rf"acts.zarr: chunk 3 \(rows 3000-3999, file activations/c/3/0\) {problem}; rebuild the store: snakemake --forcerun .*acts.zarr"):
        open_store(store.path, verify=True)
    with pytest.raises(StoreError, match="chunk 3"):
        train_sae(store.path, tmp_path / "seed0", SaeConfig(num_latents=32, k=4), TrainConfig(batch_size=100, warmup_steps=1), seed=0, data_seed=0)
    assert not (tmp_path / "seed0").exists() and not (tmp_path / "seed0.state").exists()


def test_store_without_checksums_is_refused_with_the_fix(tmp_path):
    store = small_store(tmp_path / "acts.zarr")
    (store.path / checksums.MANIFEST).unlink()
    with pytest.raises(StoreError, match=r"no SHA256SUMS .*rebuild the store: snakemake --forcerun"):
        open_store(store.path, verify=True)


def test_rebuilding_a_damaged_store_gives_the_original_bytes(tmp_path):
    store = small_store(tmp_path / "acts.zarr")
    original = {p.relative_to(store.path): p.read_bytes() for p in store.path.rglob("*") if p.is_file()}
    truncate(store.path / "activations" / "c" / "1" / "0")
    with pytest.raises(StoreError, match="chunk 1"):
        open_store(store.path, verify=True)
    rebuilt = small_store(tmp_path / "acts.zarr")  # what the rule does when rerun
    assert {p.relative_to(rebuilt.path): p.read_bytes() for p in rebuilt.path.rglob("*") if p.is_file()} == original


# -- NaN and inf stop training, with step, seeds and site; no checkpoint ------------------------------


def test_overflowing_loss_stops_training_at_its_step_and_saves_no_diverged_state(tmp_path):
    """Rows of 1e20 are finite in float32 but their squared error is not: the loss turns inf exactly at
    the first step whose batch holds one."""
    n, n_heldout, batch = 4000, 1000, 100
    data = rows(n)
    data[2500] = 1e20
    path = tmp_path / "model" / "data" / "layers.0" / "activations.zarr"
    write_store(path, data, n_heldout=n_heldout, attrs={"hook": "layers.0"}, dtype="float32")
    cfg = TrainConfig(batch_size=batch, max_tokens=30 * batch, warmup_steps=1, state_every_steps=1)
    plan = BatchPlan(n - n_heldout, open_store(path).array.chunks[0], batch, 30, data_seed=3, window_rows=cfg.window_rows)
    bad_step = next(step for step, idx in enumerate(plan.indices()) if 2500 in idx)
    assert bad_step > 0
    out = [tmp_path / "seed0", tmp_path / "seed1"]
    with pytest.raises(TrainingDiverged) as err:
        train_saes(path, out, SaeConfig(num_latents=32, k=4), cfg, seeds=[0, 1], data_seed=3)
    assert str(err.value).startswith(
        f"site {path.parent} (hook layers.0): training diverged: non-finite loss at step {bad_step} for seeds [0, 1]"
    )
    assert "no checkpoint written" in str(err.value)
    assert not out[0].exists() and not out[1].exists()
    state = torch.load(tmp_path / "seed0.state" / "state.pt", weights_only=True)
    assert state["step"] == bad_step  # the last state is from before the diverged step ...
    assert torch.isfinite(state["curve"]).all()  # ... and holds only finite losses


def test_nan_in_a_batch_stops_training_naming_step_seeds_and_store(tmp_path):
    data = rows(3000)
    path = tmp_path / "acts.zarr"
    write_store(path, data, n_heldout=1000, attrs={"hook": "h"}, dtype="float32")
    zarr.open_group(str(path), mode="r+")["activations"][10] = np.nan
    # as a store written by a tool that listed the NaN chunk's bytes
    checksums.rewrite_manifest(path, [(checksums.file_sha256(path / n), n) for _, n in checksums.read_manifest(path)])
    with pytest.raises(TrainingDiverged, match=r"hook h\): non-finite activations in the batch of step \d+ for seeds \[4\] \(store .*acts.zarr\); no checkpoint written"):
        train_sae(path, tmp_path / "seed4", SaeConfig(num_latents=32, k=4), TrainConfig(batch_size=100, warmup_steps=1), seed=4, data_seed=0)
    assert not (tmp_path / "seed4").exists()


# -- atomic outputs -------------------------------------------------------------------------------------

SLOW_WRITER = """
import sys, time
from pathlib import Path
from saeseeds.common.atomic import atomic_write

def write(tmp):
    with open(tmp, "wb") as f:
        for _ in range(10_000):
            f.write(b"x" * 4096)
            f.flush()
            time.sleep(0.001)

atomic_write(sys.argv[1], write)
"""


def test_a_writer_killed_mid_write_leaves_no_output(tmp_path):
    target = tmp_path / "out" / "result.bin"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(target)])
    deadline = time.time() + 60
    while not any(target.parent.glob(".result.bin.tmp-*")) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert not target.exists()  # half a file never carries the output's name
    assert any(target.parent.glob(".result.bin.tmp-*"))
    atomic_write(target, lambda tmp: tmp.write_bytes(b"whole"))  # the next writer clears the leftover
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.bin"]


def test_a_failed_write_keeps_the_previous_output(tmp_path):
    target = tmp_path / "table.parquet"
    write_parquet(pd.DataFrame({"a": [1, 2]}), target)
    before = target.read_bytes()

    def broken(tmp):
        tmp.write_bytes(b"PAR1 half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


# -- a killed activation cache resumes from its last whole chunk -----------------------------------------


class Interrupt(Exception):
    pass


def test_killed_cache_resumes_from_its_last_whole_chunk_to_the_same_bytes(smollm, tmp_path, caplog):
    model, tok = smollm
    ids = torch.tensor(tok("In the beginning God created the heaven and the earth. " * 60)["input_ids"][:512]).view(32, 16)
    cfg = ActivationConfig(max_tokens=512, heldout_tokens=64, context_length=16, batch_size=4, chunk_rows=96)
    attrs = {"model": "embedded:smollm2-135m", "revision": "main", "dataset": "test", "hook": "layers.1.mlp"}
    reference = write_activations(tmp_path / "ref.zarr", model, ids, hook="layers.1.mlp", cfg=cfg, attrs=attrs)

    calls = []

    def stop_at_batch_5(module, args, output):
        calls.append(1)
        if len(calls) == 5:
            raise Interrupt  # dies like a killed job: no cleanup in the writer
    handle = model.base_model.layers[1].mlp.register_forward_hook(stop_at_batch_5)
    try:
        with pytest.raises(Interrupt):
            write_activations(tmp_path / "acts.zarr", model, ids, hook="layers.1.mlp", cfg=cfg, attrs=attrs)
    finally:
        handle.remove()
    partial = tmp_path / "acts.zarr.tmp"
    assert not (tmp_path / "acts.zarr").exists()
    # 4 batches of 64 rows done = 256 rows = 2 whole chunks of 96 listed
    assert len(checksums.read_manifest(partial)) == 2

    calls.clear()
    counter = model.base_model.layers[1].mlp.register_forward_hook(lambda *a: calls.append(1))
    try:
        with caplog.at_level(logging.INFO, logger="saeseeds.activations.caching"):
            resumed = write_activations(tmp_path / "acts.zarr", model, ids, hook="layers.1.mlp", cfg=cfg, attrs=attrs)
    finally:
        counter.remove()
    assert "192 of 512 rows kept" in caplog.text and "restart at batch 3 of 8" in caplog.text
    assert len(calls) == 1 + 5  # the first batch (to learn the width), then batches 3..7
    for name in [n for _, n in checksums.read_manifest(reference.path)] + [checksums.MANIFEST]:
        assert (resumed.path / name).read_bytes() == (reference.path / name).read_bytes(), name
    volatile = {"tokens_per_second"}
    same = lambda a: {k: v for k, v in a.items() if k not in volatile}  # noqa: E731
    assert same(resumed.attrs) == same(reference.attrs)
    assert not partial.exists() and not (resumed.path / checksums.RESUME).exists()


def test_interrupted_cache_of_other_settings_is_started_afresh(tmp_path):
    writer = StoreWriter(tmp_path / "a.zarr", 3000, D, dtype="float32", chunk_rows=1000, fingerprint="job-1")
    writer.append(rows(2000))
    assert len(checksums.read_manifest(writer.tmp_path)) == 2
    again = StoreWriter(tmp_path / "a.zarr", 3000, D, dtype="float32", chunk_rows=1000, fingerprint="job-1")
    assert again.resumed_rows == 2000
    truncate(again.tmp_path / "activations" / "c" / "1" / "0")
    damaged = StoreWriter(tmp_path / "a.zarr", 3000, D, dtype="float32", chunk_rows=1000, fingerprint="job-1")
    assert damaged.resumed_rows == 1000  # the damaged chunk and everything after it are redone
    other = StoreWriter(tmp_path / "a.zarr", 3000, D, dtype="float32", chunk_rows=1000, fingerprint="job-2")
    assert other.resumed_rows == 0 and checksums.read_manifest(other.tmp_path) == []


# -- full disks and read-only folders -------------------------------------------------------------------


def test_full_disk_names_the_output(tmp_path):
    target = tmp_path / "matches" / "seed0-seed1.parquet"

    def write_to_a_full_disk(tmp):
        tmp.symlink_to("/dev/full")  # the kernel answers every write with ENOSPC
        pd.DataFrame({"a": np.arange(100_000)}).to_parquet(tmp)

    with pytest.raises(OutputError) as err:
        atomic_write(target, write_to_a_full_disk)
    assert err.value.errno == errno.ENOSPC
    assert str(err.value) == f"cannot write {target}: no space left on the device: free space there, or point results/ at a larger disk [ENOSPC]"
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_store_that_cannot_fit_fails_before_any_row(tmp_path):
    with pytest.raises(StoreError, match=r"cannot write .*huge.zarr: needs up to 7,?\d+\.\d TiB .* only .* free on the disk holding"):
        StoreWriter(tmp_path / "huge.zarr", 10**12, 4096, dtype="float16")
    assert list(tmp_path.iterdir()) == []


def can_mount_tmpfs():
    # a folder of its own: each xdist worker runs this at collection, and a shared fixed path raced (one worker's
    # rmdir under the other's mount), so the workers collected different tests and the run failed
    probe = Path(tempfile.mkdtemp(prefix="saeseeds-tmpfs-probe-"))
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], check=True)
    probe.rmdir()
    return ok


@pytest.mark.skipif(not can_mount_tmpfs(), reason="mounting a 1 MiB tmpfs needs root")
def test_disk_filling_up_while_caching_names_the_store_and_chunk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        writer = StoreWriter(disk / "acts.zarr", 12_000, D, dtype="float32", chunk_rows=2000)  # 750 KiB: fits
        (disk / "ballast").write_bytes(b"\0" * 600_000)  # another job takes the space meanwhile
        with pytest.raises(StoreError) as err:
            writer.append(rows(12_000))
        assert str(err.value).startswith(f"cannot write {disk / 'acts.zarr.tmp'} (chunk ")
        assert str(err.value).endswith("no space left on the device: free space there, or point results/ at a larger disk [ENOSPC]")
        assert not (disk / "acts.zarr").exists()
    finally:
        unmount(disk)


def unmount(mount: Path) -> None:
    """Unmounts a test's tmpfs, waiting up to 5 s while it is busy: a CI run once got "target is busy" right after the
    failed write (something still held a file there for a moment; the cause was not found), and the test then failed
    in its clean-up though every assertion had passed."""
    for _ in range(50):
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", str(mount)], check=True)


READ_ONLY_WRITER = """
import sys
from saeseeds.common.atomic import OutputError, atomic_write
try:
    atomic_write(sys.argv[1], lambda tmp: tmp.write_text("x"))
except OutputError as err:
    print(err)
"""


def test_read_only_results_folder_names_the_output():
    folder = Path("/tmp") / f"saeseeds-ro-{os.getpid()}"  # outside pytest's root-only tmp folders
    (folder / "results").mkdir(parents=True)
    try:
        folder.chmod(0o755)
        (folder / "results").chmod(0o555)
        target = folder / "results" / "summary.csv"
        # root ignores permission bits; without the capability to override them it obeys them like anyone
        drop = ["setpriv", "--inh-caps=-dac_override,-dac_read_search", "--bounding-set=-dac_override,-dac_read_search"]
        prefix = drop if os.geteuid() == 0 else []
        proc = subprocess.run([*prefix, sys.executable, "-c", READ_ONLY_WRITER, str(target)], capture_output=True, text=True, timeout=120)
        assert proc.stdout.strip() == f"cannot write {target}: permission denied: make the folder writable by this user [EACCES]", proc.stderr[-2000:]
        assert not target.exists()
    finally:
        (folder / "results").chmod(0o755)
        shutil.rmtree(folder)


# -- a real snakemake, killed at each stage, finishes with --rerun-incomplete to the same bytes --------

SITE = "smollm2-135m/kjv-pydoc/layers.2.mlp"
SAE_DIR = f"results/{SITE}/topk-512"
PAIRS = ["seed0-seed1", "seed0-seed2", "seed1-seed2"]
TARGETS = [f"{SAE_DIR}/orphans/subsets.parquet", *(f"{SAE_DIR}/matches/{p}.parquet" for p in PAIRS)]
# What differs between two uninterrupted runs too: speeds and times, nothing computed from the data.
VOLATILE = {"metrics.json": {"wall_time_s", "tokens_per_s", "reader_wait_s"}, "activations.zarr/zarr.json": {"tokens_per_second"}}


def fault_config():
    """The smoke study cut to one site, one 512-latent SAE and 3 seeds trained in one job, with small
    store chunks and frequent training states so that each stage can be killed half-way."""
    config = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    config["sites"] = [{"model": "smollm2-135m", "dataset": "kjv-pydoc", "hooks": ["layers.2.mlp"], "saes": ["topk-512"]}]
    config.pop("autointerp", None)  # explains SAEs this cut-down study drops
    config.pop("functional", None)  # measures a site this cut-down study drops
    config["activations"].update(max_tokens=12288, heldout_tokens=2048, batch_size=8, chunk_rows=512)
    config["saes"] = {"topk-512": {"arch": "topk", "num_latents": 512, "k": 8, "batch_size": 256, "max_tokens": 256 * 200,
                                   "warmup_steps": 2, "state_every_steps": 10}}
    config["train"].update(seeds_per_job=3)
    return config


def workflow_copy(path):
    for name in ("workflow", "config"):
        shutil.copytree(ROOT / name, path / name)
    (path / "faults.yaml").write_text(yaml.safe_dump(fault_config()))
    return path


def snakemake_cmd(*flags, targets=()):
    """Targets come first: --configfile takes every word after it up to the next option."""
    return [sys.executable, "-m", "snakemake", *targets, "--cores", "2", *flags, "--configfile", "faults.yaml"]


def outputs(workdir):
    """Returns {path under results/: bytes, with the volatile fields of JSON files dropped}."""
    out = {}
    for path in sorted((workdir / "results").rglob("*")):
        rel = path.relative_to(workdir / "results").as_posix()
        if not path.is_file() or any(part.startswith(".") or part.endswith((".tmp", ".state")) for part in rel.split("/")):
            continue  # temporaries of killed writers: hidden or .tmp/.state names, never an output's name
        data = path.read_bytes()
        for suffix, keys in VOLATILE.items():
            if rel.endswith(suffix):
                doc = json.loads(data)
                target = doc["attributes"] if "attributes" in doc else doc
                for key in keys:
                    target.pop(key, None)
                data = json.dumps(doc, sort_keys=True).encode()
        out[rel] = data
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: every killed run must end with its bytes."""
    workdir = workflow_copy(tmp_path_factory.mktemp("uninterrupted"))
    start = time.perf_counter()
    proc = subprocess.run(snakemake_cmd(targets=TARGETS), cwd=workdir, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    print(f"uninterrupted run: {time.perf_counter() - start:.1f} s")
    return outputs(workdir)


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def run_and_kill(workdir, ready, what, timeout=900):
    """Starts snakemake in its own process group, SIGKILLs the whole group once `ready()` holds."""
    subprocess.run(snakemake_cmd("--unlock"), cwd=workdir, capture_output=True, timeout=300)  # the killed run's lock
    with open(workdir / f"snakemake-{what}.log", "w") as log:
        proc = subprocess.Popen(snakemake_cmd("--rerun-incomplete", targets=TARGETS), cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"snakemake ended (rc {proc.returncode}) before the kill point: {what}"
        assert time.time() < deadline, f"timed out waiting to kill during {what}"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for _ in range(200):
        if not group_alive(proc.pid):
            break
        time.sleep(0.05)
    assert not group_alive(proc.pid), "a job outlived the kill of its process group"


def manifest_lines(workdir):
    path = workdir / "results" / SITE / "activations.zarr.tmp" / checksums.MANIFEST
    return len(checksums.read_manifest(path.parent)) if path.exists() else 0


@pytest.fixture(scope="module")
def killed_three_times(tmp_path_factory):
    """The same study killed during caching, during training and during matching, each time resumed with
    --rerun-incomplete; yields (workdir, {stage: the outputs present right after its kill})."""
    workdir = workflow_copy(tmp_path_factory.mktemp("killed"))
    after_kill = {}
    start = time.perf_counter()
    run_and_kill(workdir, lambda: manifest_lines(workdir) >= 3, "caching")
    after_kill["caching"] = (outputs(workdir), manifest_lines(workdir))
    state = workdir / SAE_DIR / "seed0.state" / "state.pt"
    run_and_kill(workdir, state.exists, "training")
    after_kill["training"] = (outputs(workdir), torch.load(state, weights_only=True)["step"])
    match_logs = workdir / "logs" / "match" / SITE / "topk-512"
    run_and_kill(workdir, lambda: match_logs.exists() and any(match_logs.iterdir()), "matching")
    after_kill["matching"] = (outputs(workdir), sorted(p.name for p in match_logs.iterdir()))
    subprocess.run(snakemake_cmd("--unlock"), cwd=workdir, capture_output=True, timeout=300)
    proc = subprocess.run(snakemake_cmd("--rerun-incomplete", targets=TARGETS), cwd=workdir, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-5000:]
    print(f"three kills and the final run: {time.perf_counter() - start:.1f} s")
    return workdir, after_kill


def assert_no_partial_output(present, reference):
    """Whatever a kill left under an output's name is whole: byte-identical to the uninterrupted run."""
    for rel, data in present.items():
        assert rel in reference, f"{rel}: not an output of the study"
        assert data == reference[rel], f"{rel}: left half-written by the kill"


def test_kill_during_caching_leaves_no_store_and_the_rerun_resumes_from_its_chunks(killed_three_times, reference):
    workdir, after_kill = killed_three_times
    present, listed = after_kill["caching"]
    assert listed >= 3
    assert not any(rel.startswith(f"{SITE}/activations.zarr/") for rel in present)
    assert_no_partial_output(present, reference)
    log = (workdir / "logs" / "activations" / f"{SITE}.log").read_text()
    assert "resuming an interrupted cache" in log and "rows kept" in log


def test_kill_during_training_leaves_no_checkpoint_and_the_rerun_resumes_at_its_step(killed_three_times, reference):
    workdir, after_kill = killed_three_times
    present, step = after_kill["training"]
    assert step >= 10
    assert not any(rel.startswith(f"{SITE}/topk-512/seed") for rel in present)  # no checkpoint of a killed job
    assert_no_partial_output(present, reference)
    log = (workdir / "logs" / "train" / SITE / "topk-512" / "seeds_0_1_2.log").read_text()
    assert "resuming at step" in log


def test_kill_during_matching_leaves_no_half_parquet(killed_three_times, reference):
    _, after_kill = killed_three_times
    present, started = after_kill["matching"]
    assert started
    assert_no_partial_output(present, reference)


def test_killed_three_times_ends_with_the_bytes_of_an_uninterrupted_run(killed_three_times, reference):
    workdir, _ = killed_three_times
    final = outputs(workdir)
    assert sorted(final) == sorted(reference)
    different = [rel for rel in reference if final[rel] != reference[rel]]
    assert different == []
    assert len(reference) > 30
    leftovers = [p for p in (workdir / "results").rglob("*") if p.name.endswith((".tmp", ".state", ".partial")) or ".tmp-" in p.name]
    assert leftovers == []


FAILING_JOB = """
import sys
from saeseeds.common.atomic import OutputError
from saeseeds.common.logs import rule_log
with rule_log(sys.argv[1]):
    raise OutputError("cannot write results/x.parquet: no space left on the device [ENOSPC]")
"""


def test_a_job_failing_on_a_named_error_says_it_in_one_line(tmp_path):
    """What Snakemake shows of a failed job is the message; the traceback stays in the job's log file."""
    log = tmp_path / "job.log"
    proc = subprocess.run([sys.executable, "-c", FAILING_JOB, str(log)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "OutputError: cannot write results/x.parquet: no space left on the device [ENOSPC]"
    assert "Traceback" in log.read_text() and "no space left" in log.read_text()
