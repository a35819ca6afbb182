"""`data convert` streams: bounded memory, a progress bar, checkpoints; a killed run resumed by the same command
writes exactly what an uninterrupted run writes (records and report counts), without duplicating a record."""

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from PIL import Image

import rscovlm.data.records as records_mod
from rscovlm.cli import main
from rscovlm.data.converters import ConvertConfig, convert, report_path
from rscovlm.data.converters.base import Converter, checkpoint_path, partial_path
from rscovlm.data.records import RecordError, iter_json_array_from, iter_records_from

REPO = Path(__file__).resolve().parents[1]


def geochat_records(n):
    out = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            conv = [{"from": "human", "value": "<image>\n[refer] Give me the location of <p>the  car</p>"},
                    {"from": "gpt", "value": f"{{<{i % 50}><10><{i % 50 + 20}><30>|<{i % 70 - 35}>}}"}]
        elif kind == 1:
            conv = [{"from": "human", "value": f"[identify] What is at {{<1><2><{3 + i % 90}><40>}}"},
                    {"from": "gpt", "value": "A storagetank !!"}]
        else:
            conv = [{"from": "human", "value": "<image>\nHow many ships ?"}, {"from": "gpt", "value": "Two.."}]
        out.append({"id": str(i // 2), "image": "a.png", "conversations": conv})  # ids repeat: renamed
    return out


def reports_equal(a: Path, b: Path) -> None:
    ra, rb = (json.loads(report_path(p).read_text()) for p in (a, b))
    for r in (ra, rb):
        r.pop("seconds"), r.pop("resumed_at_record"), r.pop("output")
    assert ra == rb


def test_killed_conversion_resumes_to_the_same_output(tmp_path):
    """A real `rscovlm data convert` process is killed (SIGKILL) after some checkpoints; running the same command
    again resumes from the last checkpoint; the output and the report equal those of an uninterrupted run."""
    Image.new("RGB", (640, 480)).save(tmp_path / "a.png")
    inp = tmp_path / "geochat.json"
    inp.write_text(json.dumps(geochat_records(30_000), indent=1))
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "rscovlm", "data", "convert", "--source", "geochat", "--in", str(inp),
           "--images", str(tmp_path), "--checkpoint-every", "500"]
    whole = tmp_path / "whole.jsonl"
    subprocess.run(cmd + ["--out", str(whole)], check=True, env=env, capture_output=True)

    out = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(cmd + ["--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpt = checkpoint_path(out)
    deadline = time.monotonic() + 120
    state = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            state = json.loads(ckpt.read_text())
        except (OSError, ValueError):
            state = None
        if state is not None and state["report"]["records_in"] >= 3000:
            break
        time.sleep(0.01)
    time.sleep(0.05)  # let it write past the checkpoint: those lines must be cut back, not duplicated
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state is not None and proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists() and partial_path(out).exists()
    written = partial_path(out).read_bytes().count(b"\n")
    assert written >= state["report"]["records_out"]

    done = subprocess.run(cmd + ["--out", str(out)], check=True, env=env, capture_output=True, text=True)
    assert "resuming" in done.stderr
    assert out.read_bytes() == whole.read_bytes()
    lines = out.read_text().splitlines()
    assert len(lines) == 30_000 and len({json.loads(x)["id"] for x in lines}) == 30_000
    reports_equal(out, whole)
    assert json.loads(report_path(out).read_text())["resumed_at_record"] >= 3000
    assert not partial_path(out).exists() and not checkpoint_path(out).exists()


class Interrupt(Exception):
    pass


def interrupt_after(monkeypatch, n):
    """Make the n-th converted record raise KeyboardInterrupt (a Ctrl-C in the middle of a run)."""
    seen = {"n": 0}
    original = Converter._handle

    def handle(self, raw, line, output):
        seen["n"] += 1
        if seen["n"] == n:
            raise KeyboardInterrupt
        return original(self, raw, line, output)

    monkeypatch.setattr(Converter, "_handle", handle)
    return lambda: monkeypatch.setattr(Converter, "_handle", original)


def dota_input(tmp_path):
    ann, img = tmp_path / "ann", tmp_path / "img"
    ann.mkdir()
    img.mkdir()
    for i in range(23):
        Image.new("RGB", (64, 64)).save(img / f"P{i:04d}.png")
        (ann / f"P{i:04d}.txt").write_text("".join(f"{j} {j} {j + 9} {j} {j + 9} {j + 5} {j} {j + 5} plane 0\n"
                                                   for j in range(i % 4)))
    return ann, img, {}


def jsonl_input(tmp_path):
    recs = [{"dataset": "d", "image_id": "a.png", "question": f"the  car {i}", "bbox": [1, 2, 3, 4],
             "image_width": 10, "image_height": 10} for i in range(57)]
    path = tmp_path / "refgeo.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs[:30]) + "\n\n{broken\n" +
                    "\n".join(json.dumps(r) for r in recs[30:]) + "\n")
    return path, None, {"skip_invalid": True}


def parquet_input(tmp_path):
    from test_data_converters import onevision_rows, write_onevision_shard

    _, _, rows = onevision_rows()
    for k in range(3):
        write_onevision_shard(tmp_path / "ov" / f"part{k}" / "s.parquet", [dict(r, id=f"{k}-{r['id']}")
                                                                          for r in rows])
    return tmp_path / "ov", tmp_path / "ov_img", {"skip_invalid": True}


@pytest.mark.parametrize("source, make, stop_at", [("dota", dota_input, 14), ("refgeo", jsonl_input, 41),
                                                   ("llava_onevision", parquet_input, 11)])
def test_interrupted_run_resumes_for_every_input_kind(tmp_path, monkeypatch, source, make, stop_at):
    """Label folders (COCO spools), JSON Lines (byte offsets, a bad line skipped) and parquet shards (shard,
    row): a run interrupted after a few checkpoints and run again equals an uninterrupted run."""
    inp, images, extra = make(tmp_path)
    ext = ".json" if source == "dota" else ".jsonl"
    whole, cut = tmp_path / f"whole{ext}", tmp_path / f"cut{ext}"

    def cfg(out):
        return ConvertConfig(input=str(inp), output=str(out), images=images and str(images), checkpoint_every=4,
                             **extra)

    convert(source, cfg(whole))
    restore = interrupt_after(monkeypatch, stop_at)
    with pytest.raises(KeyboardInterrupt):
        convert(source, cfg(cut))
    restore()
    assert checkpoint_path(cut).exists() and partial_path(cut).exists() and not cut.exists()
    state = json.loads(checkpoint_path(cut).read_text())
    last = (stop_at - 1) // 4 * 4  # the checkpoint before the interrupted record
    assert state["report"]["records_in"] == last
    rep = convert(source, cfg(cut))
    assert rep.resumed_at == last
    assert cut.read_bytes() == whole.read_bytes()
    reports_equal(cut, whole)


def test_checkpoint_of_other_options_is_not_used(tmp_path, monkeypatch, capsys):
    inp, _, extra = jsonl_input(tmp_path)
    out = tmp_path / "o.jsonl"
    restore = interrupt_after(monkeypatch, 9)
    with pytest.raises(KeyboardInterrupt):
        convert("refgeo", ConvertConfig(input=str(inp), output=str(out), checkpoint_every=4, **extra))
    restore()
    rep = convert("refgeo", ConvertConfig(input=str(inp), output=str(out), checkpoint_every=4, clean=False,
                                          **extra))
    assert rep.resumed_at is None and "starting over" in capsys.readouterr().err
    assert rep.records_in == 58 and json.loads(out.read_text().splitlines()[0])["question"] == "the  car 0"


def test_cli_interrupt_keeps_the_checkpoint_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    inp, _, _ = jsonl_input(tmp_path)
    out = tmp_path / "o.jsonl"
    interrupt_after(monkeypatch, 20)
    args = ["data", "convert", "--source", "refgeo", "--in", str(inp), "--out", str(out), "--skip-invalid",
            "--checkpoint-every", "5"]
    assert main(args) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert checkpoint_path(out).exists()


def test_malformed_input_leaves_no_partial_files(tmp_path):
    inp, _, _ = jsonl_input(tmp_path)
    out = tmp_path / "o.jsonl"
    with pytest.raises(RecordError, match="not valid JSON"):
        convert("refgeo", ConvertConfig(input=str(inp), output=str(out), checkpoint_every=3))
    assert not partial_path(out).exists() and not checkpoint_path(out).exists() and not out.exists()


def test_progress_bar_on_stderr(tmp_path, capsys):
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    inp = tmp_path / "g.json"
    inp.write_text(json.dumps(geochat_records(30)))
    assert main(["data", "convert", "--source", "geochat", "--in", str(inp), "--images", str(tmp_path),
                 "--out", str(tmp_path / "o.jsonl")]) == 0
    captured = capsys.readouterr()
    assert "convert geochat" in captured.err and "100%" in captured.err and captured.out == ""
    assert main(["data", "convert", "--source", "geochat", "--in", str(inp), "--images", str(tmp_path),
                 "--out", str(tmp_path / "o.jsonl"), "--no-progress"]) == 0
    assert "convert geochat" not in capsys.readouterr().err


def test_json_array_is_read_in_bounded_memory(tmp_path):
    """A 24 MB JSON array is read element by element: the reader's peak allocation stays a small fraction of the
    file (one chunk of 1 MiB plus one element), unlike json.load."""
    path = tmp_path / "big.json"
    rec = {"id": "x", "conversations": [{"from": "human", "value": "é" * 200}, {"from": "gpt", "value": "y" * 800}]}
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[\n" + ",\n".join(json.dumps(dict(rec, id=str(i)), ensure_ascii=False) for i in range(20_000)))
        fh.write("\n]\n")
    assert path.stat().st_size > 20e6
    tracemalloc.start()
    n = sum(1 for _ in iter_json_array_from(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 20_000 and peak < 8e6, peak


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 64])
def test_streamed_array_reader_at_any_chunk_size(tmp_path, monkeypatch, chunk):
    """Chunk boundaries inside numbers ("-2.5"), multi-byte characters and strings change nothing; every cursor
    resumes right after its element; an undecodable byte names its line and byte offset."""
    monkeypatch.setattr(records_mod, "_CHUNK", chunk)
    recs = [{"a": -2.5, "b": "héllo ✓ 𝄞"}, 123456789, [1e-07, None, True], "x\ny", {}, []]
    path = tmp_path / "a.json"
    text = json.dumps(recs, indent=1, ensure_ascii=False)
    path.write_text(text, encoding="utf-8")
    got = list(iter_json_array_from(path))
    assert [o for _, o, _ in got] == recs
    assert [line for line, _, _ in got] == [2, 6, 7, 12, 13, 14]
    for i, (_, _, cur) in enumerate(got):
        assert [o for _, o, _ in iter_json_array_from(path, start=cur)] == recs[i + 1:]
    path.write_bytes(b'[\n {"a": "caf\xe4"},\n {"b": 2}\n]\n')
    with pytest.raises(RecordError, match=r"a.json:2: not UTF-8 text: byte 0xe4 at byte offset 13"):
        list(iter_json_array_from(path))
    got = list(iter_records_from(path, errors="yield"))
    assert isinstance(got[0][1], RecordError) and got[1][1] == {"b": 2}
    path.write_text('[\n {"a": 1},\n {"b": 2\n]\n')
    with pytest.raises(RecordError, match=r"a.json:4: not valid JSON"):
        list(iter_json_array_from(path))


@pytest.mark.parametrize("source, make", [("refgeo", jsonl_input), ("dota", dota_input)])
def test_partial_output_shorter_than_its_checkpoint_starts_over(tmp_path, monkeypatch, capsys, source, make):
    """A partial output that lost bytes the checkpoint counted (copied or cut by hand) cannot be resumed from:
    the run says so and starts over (never pads the hole or duplicates records); the result is the uninterrupted
    one."""
    inp, images, extra = make(tmp_path)
    ext = ".json" if source == "dota" else ".jsonl"
    whole, cut = tmp_path / f"whole{ext}", tmp_path / f"cut{ext}"

    def cfg(out):
        return ConvertConfig(input=str(inp), output=str(out), images=images and str(images), checkpoint_every=4,
                             **extra)

    convert(source, cfg(whole))
    restore = interrupt_after(monkeypatch, 14)
    with pytest.raises(KeyboardInterrupt):
        convert(source, cfg(cut))
    restore()
    state = json.loads(checkpoint_path(cut).read_text())
    size = state["output"]["bytes" if source == "refgeo" else "images"]  # DOTA: the spooled image entries
    assert partial_path(cut).stat().st_size > size > 0
    with open(partial_path(cut), "r+b") as fh:
        fh.truncate(size - 1)
    capsys.readouterr()
    rep = convert(source, cfg(cut))
    assert rep.resumed_at is None and "shorter than its checkpoint says; starting over" in capsys.readouterr().err
    assert cut.read_bytes() == whole.read_bytes()
    reports_equal(cut, whole)
