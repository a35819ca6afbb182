"""Property test: converters turn arbitrary damage to a valid record into a RecordError that names a line and
field, or into a valid record - never an unrelated exception."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rscovlm.data.converters import ConvertConfig, convert
from rscovlm.data.records import RecordError, validate_conversation, validate_grounding

VALID = {
    "geochat": {"id": "1", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\n[refer] where is <p>the car</p>?"},
        {"from": "gpt", "value": "{<10><20><30><40>|<15>}"}]},
    "teochatlas": {"id": "2", "video": ["a.png", "a.png"], "timestamp": ["2020-01-01", "2019-01-01"],
                   "conversations": [{"from": "human", "value": "<video>\n[identify] what is at {<1><2><3><4>}?"},
                                     {"from": "gpt", "value": "a car"}]},
    "vhm": {"image": "a.png", "size": [64, 48], "conversations": [{"value": "{VG}the car"},
                                                                  {"value": "[1, 2, 30, 40]"}]},
    "llava_onevision": {"id": "3", "image": ["a.png"], "conversations": [
        {"from": "human", "value": "<image>\nwhat?"}, {"from": "gpt", "value": "this"}]},
    "refgeo": {"dataset": "d", "image_id": "a.png", "question": "the car", "question_id": 1,
               "bbox": [1, 2, 30, 40], "poly": [[1, 2], [30, 2], [30, 40], [1, 40]],
               "image_width": 64, "image_height": 48},
    # the layouts of the released files (VHM list_sft.json, refGeo's LLaVA and ms-swift SFT files)
    "vhm_sft": {"image": "a.png", "source_dataset": "sub", "conversations": [
        {"from": "human", "value": "<image>\n{VG} the car"}, {"from": "gpt", "value": "[[010,020,300,400]]"}]},
    "refgeo_llava": {"id": "0", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\n[refer] give me the bounding boxes of all <ref>car</ref>"},
        {"from": "gpt", "value": "[[1,2,30,40],[50,50,60,70]]"}]},
    "refgeo_swift": {"images": ["/mnt/x/refGeo/images/sub/a.png"], "messages": [
        {"role": "user", "content": "<image> give me the location of <ref-object>"},
        {"role": "assistant", "content": "<bbox><bbox>"}], "objects": {"ref": "the car", "bbox": [[1, 2, 30, 40]]}},
}
SOURCE = {"vhm_sft": "vhm", "refgeo_llava": "refgeo", "refgeo_swift": "refgeo"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-200, 200) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet="<>{}[]|0123456789 ,.-abcimagevideo\n", max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["from", "value", "x"]), inner,
                                                                max_size=3),
    max_leaves=8)


def paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths(v, prefix + (i,))


def mutate(obj, path, value, delete):
    obj = json.loads(json.dumps(obj))
    if not path:
        return value
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("img")
    Image.new("RGB", (64, 48)).save(root / "a.png")
    (root / "sub").mkdir()
    Image.new("RGB", (64, 48)).save(root / "sub" / "a.png")
    return root


@pytest.mark.parametrize("layout", sorted(VALID))
def test_damaged_records_raise_record_errors(layout, image_root, tmp_path_factory):
    source = SOURCE.get(layout, layout)
    base = VALID[layout]
    all_paths = list(paths(base))
    work = tmp_path_factory.mktemp(layout)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.sampled_from(all_paths), json_values, st.booleans())
    def check(path, value, delete):
        rec = mutate(base, path, value, delete and bool(path))
        inp = work / "in.jsonl"
        inp.write_text(json.dumps(base) + "\n" + json.dumps(rec) + "\n")
        try:
            rep = convert(source, ConvertConfig(input=str(inp), output=str(work / "out.jsonl"),
                                                images=str(image_root)))
        except RecordError as err:
            assert err.problem.file == str(inp) and err.problem.line == 2
            return
        validate = validate_grounding if rep.kind == "grounding" else validate_conversation
        for line in (work / "out.jsonl").read_text().splitlines():
            assert validate(json.loads(line)) == []

    check()
