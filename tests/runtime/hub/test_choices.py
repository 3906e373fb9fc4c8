"""File choices of a repo: quant names, split and checkpoint grouping, fit verdicts, one recommendation;
and the GGUF header read over the network through the real huggingface_hub session."""
from __future__ import annotations

import pytest

from runtime.errors import ModelFileError
from runtime.hub.choices import (ModelChoice, estimate_choice, f16_weights_bytes, group_files, model_choices,
                                 read_remote_gguf_info, recommend, summarize)
from runtime.models.quants import quant_from_name
from runtime.hub.types import RemoteFile, RepoListing
from runtime.models.gguf_info import HeaderIncomplete, read_gguf_header_prefix, read_gguf_info
from runtime.models.hardware import check_fit, estimate_model_memory, info_from_config
from tests.model_files import write_unknown_arch_gguf

KiB, MiB, GiB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize("name, quant", [
    ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
    ("qwen2.5-0.5b-instruct-q8_0.gguf", "Q8_0"),
    ("qwen2.5-0.5b-instruct-fp16.gguf", "F16"),
    ("tinyllama-1.1b-chat-v1.0.Q5_K_S.gguf", "Q5_K_S"),
    ("Phi-3.5-mini-instruct-IQ4_XS.gguf", "IQ4_XS"),
    ("Phi-3.5-mini-instruct-IQ3_XXS.gguf", "IQ3_XXS"),
    ("SmolLM2-1.7B-Instruct-Q4_K_L.gguf", "Q4_K_L"),
    ("SmolLM2-1.7B-Instruct-Q6_K.gguf", "Q6_K"),
    ("SmolLM2-1.7B-Instruct-bf16.gguf", "BF16"),
    ("SmolLM2-1.7B-Instruct-f32.gguf", "F32"),
    ("gemma-3-1b-it-Q4_0_4_8.gguf", "Q4_0_4_8"),
    ("Qwen3-30B-A3B-UD-Q4_K_XL.gguf", "Q4_K_XL"),
    ("model-Q4_K_M-00001-of-00003.gguf", "Q4_K_M"),
    ("Big-Q8_0/Big-Q8_0-00002-of-00002.gguf", "Q8_0"),
    ("mistral-f16-Q4_K_M.gguf", "Q4_K_M"),                       # the last type named is the file's own
    ("ggml-model-q4_0.gguf", "Q4_0"),
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("model.gguf", None),
    ("Qwen2.5-7B.gguf", None),                                  # no "Q" type hiding in "Qwen2"
    ("IQ-test-model.gguf", None),
])
def test_quant_from_name(name, quant):
    assert quant_from_name(name) == quant


def rf(path: str, size: int = 1000) -> RemoteFile:
    return RemoteFile(path=path, size=size, sha256="0" * 64 if path.endswith((".gguf", ".safetensors")) else None)


def test_split_model_is_one_choice_with_all_parts():
    files = [rf("README.md", 10), rf("m-Q8_0-00002-of-00003.gguf", 2000), rf("m-Q8_0-00001-of-00003.gguf", 3000),
             rf("m-Q8_0-00003-of-00003.gguf", 500), rf("m-Q4_K_M.gguf", 2500)]
    choices = group_files(files)
    assert [c.label for c in choices] == ["Q4_K_M", "Q8_0 (3 parts)"]
    split = choices[1]
    assert [f.path for f in split.files] == [f"m-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert split.size_bytes == 5500 and split.quant == "Q8_0" and split.downloadable
    assert split.name == "m-Q8_0-00001-of-00003.gguf"


def test_a_missing_part_is_named():
    choices = group_files([rf("big/m-F16-00001-of-00003.gguf"), rf("big/m-F16-00003-of-00003.gguf")])
    assert len(choices) == 1
    assert choices[0].missing == ["big/m-F16-00002-of-00003.gguf"]
    assert not choices[0].downloadable


def test_helper_files_are_no_choices():
    files = [rf("mmproj-model-f16.gguf"), rf("gemma-3-4b-it-mmproj-F16.gguf"), rf("imatrix.gguf"),
             rf("ggml-vocab-llama.gguf"), rf("notes.txt"), rf("model-Q4_K_M.gguf")]
    assert [c.name for c in group_files(files)] == ["model-Q4_K_M.gguf"]


def test_checkpoint_is_one_choice_with_shards_and_side_files():
    files = [rf("model-00001-of-00002.safetensors", 4000), rf("model-00002-of-00002.safetensors", 1000),
             rf("model.safetensors.index.json", 50), rf("config.json", 20), rf("tokenizer.json", 300),
             rf("tokenizer_config.json", 30), rf("generation_config.json", 10), rf("README.md", 5),
             rf("original/consolidated.00.pth", 9000), rf(".gitattributes", 5)]
    [cp] = group_files(files, {"torch_dtype": "bfloat16"})
    assert cp.kind == "checkpoint" and cp.dtype == "BF16" and cp.label == "Checkpoint (BF16, 2 shards)"
    assert [f.path for f in cp.files] == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "config.json",
        "generation_config.json", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json"]
    assert cp.size_bytes == 4000 + 1000 + 20 + 10 + 50 + 300 + 30
    assert not cp.missing


def test_checkpoint_with_a_missing_shard_and_mistral_duplicates():
    files = [rf("model-00001-of-00003.safetensors"), rf("model-00003-of-00003.safetensors"),
             rf("consolidated.safetensors", 99999), rf("config.json")]
    [cp] = group_files(files, {"dtype": "float32"})  # newer transformers write "dtype"
    assert cp.dtype == "F32"
    assert cp.missing == ["model-00002-of-00003.safetensors"]
    assert all(not f.path.startswith("consolidated") for f in cp.files)


def test_pickle_only_checkpoint_cannot_be_converted():
    [cp] = group_files([rf("pytorch_model.bin", 5000), rf("config.json")])
    assert "safetensors" in cp.unusable
    estimate_choice(cp, None, 2048, available_bytes=64 * GiB)
    assert recommend([cp]) is None and cp.reason == cp.unusable


def test_f16_size_after_conversion():
    [f32] = group_files([rf("model.safetensors", 4 * GiB), rf("config.json", 100)], {"torch_dtype": "float32"})
    assert f16_weights_bytes(f32) == 2 * GiB                      # 4 bytes per weight become 2
    [bf16] = group_files([rf("model.safetensors", 3 * GiB)], {"torch_dtype": "bfloat16"})
    assert f16_weights_bytes(bf16) == 3 * GiB
    assert f16_weights_bytes(bf16, parameter_count=1_000_000) == 2_000_000  # the headers' count wins


# --- recommendation ---------------------------------------------------------------------------

LLAMA = {"model_type": "llama", "num_hidden_layers": 16, "hidden_size": 2048, "num_attention_heads": 32,
         "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "max_position_embeddings": 131072}
# Llama-3.2-1B at 4096 tokens needs weights + 128 MiB KV + 288 MiB working memory (test_fit_estimate.py)
EXTRA_4096 = 128 * MiB + 288 * MiB

SIZES = {"Q2_K": 580 * MiB, "Q4_K_M": 770 * MiB, "Q4_0_4_8": 740 * MiB, "Q6_K": 970 * MiB,
         "Q8_0": 1260 * MiB, "F16": 2360 * MiB}


def judged(available: int, names=tuple(SIZES), n_ctx: int = 4096) -> list[ModelChoice]:
    files = [rf(f"Llama-3.2-1B-Instruct-{q}.gguf", SIZES[q]) for q in names]
    choices = group_files(files)
    shape = info_from_config(LLAMA, 0)
    for c in choices:
        estimate_choice(c, shape, n_ctx, available_bytes=available)
    recommend(choices)
    return choices


def by_quant(choices):
    return {c.quant: c for c in choices}


def test_estimate_is_weights_plus_context():
    c = by_quant(judged(16 * GiB))["Q8_0"]
    assert c.estimate_bytes == 1260 * MiB + EXTRA_4096 == c.fit.needed_bytes
    assert c.fit.n_ctx == 4096


def test_recommends_q8_0_when_everything_fits():
    choices = judged(16 * GiB)
    assert [c.quant for c in choices if c.recommended] == ["Q8_0"]
    best = by_quant(choices)["Q8_0"]
    assert "Q8_0 is nearly lossless" in best.reason and "16.0 GiB of RAM free" in best.reason
    assert "twice the size of Q8_0" in by_quant(choices)["F16"].reason
    assert "ARM-only" in by_quant(choices)["Q4_0_4_8"].reason
    assert "lower quality than Q8_0" in by_quant(choices)["Q4_K_M"].reason


def test_recommends_the_best_that_fits_comfortably():
    # Q6_K needs 970 + 416 = 1386 MiB; with 1.9 GiB free that is 71% (fits); Q8_0 needs 1676 MiB = 86% (tight)
    choices = judged(int(1.9 * GiB))
    q = by_quant(choices)
    assert q["Q6_K"].fit.status == "fits" and q["Q8_0"].fit.status == "tight" and q["F16"].fit.status == "too_big"
    assert [c.quant for c in choices if c.recommended] == ["Q6_K"]
    assert "larger, better files would be tight or too big" in q["Q6_K"].reason
    assert q["Q8_0"].reason.startswith("Tight:") and q["F16"].reason.startswith("Too big")


def test_full_precision_only_without_quantized_files():
    choices = judged(16 * GiB, names=("F16",))
    assert choices[0].recommended and "no quantized file" in choices[0].reason


def test_checkpoint_only_when_no_gguf_fits():
    """A checkpoint is recommended only when the repo has no GGUF that fits."""
    files = [rf("model.safetensors", 1000 * MiB), rf("config.json", 100)]
    [cp] = group_files(files, {**LLAMA, "torch_dtype": "bfloat16"})
    estimate_choice(cp, info_from_config(LLAMA, 0), 4096, available_bytes=16 * GiB)
    assert cp.estimate_bytes == 1000 * MiB + EXTRA_4096  # BF16 -> F16: same size
    assert "after converting it" in cp.fit.detail
    gguf = judged(16 * GiB, names=("Q4_K_M",))
    assert recommend(gguf + [cp]).quant == "Q4_K_M"
    assert "ready-made GGUF" in cp.reason
    assert recommend([cp]) is cp and "convert" in cp.reason


def test_nothing_fits_says_what_the_smallest_needs():
    choices = judged(700 * MiB, names=("Q4_K_M", "Q8_0"))
    assert not any(c.recommended for c in choices)
    text = summarize(choices)
    # Q4_K_M: 770 MiB + 416 MiB = 1186 MiB = 1.2 GiB
    assert "Nothing here fits" in text and "Q4_K_M" in text and "1.2 GiB" in text and "700.0 MiB of RAM" in text


def test_only_tight_is_no_recommendation_but_says_so():
    # Q4_K_M needs 1186 MiB; 1300 MiB free: 91% -> tight
    choices = judged(1300 * MiB, names=("Q4_K_M",))
    assert choices[0].fit.status == "tight" and not choices[0].recommended
    assert "Nothing fits comfortably" in summarize(choices)


def test_incomplete_split_is_never_recommended():
    choices = group_files([rf("m-Q8_0-00001-of-00002.gguf", 100 * MiB), rf("m-Q4_K_M.gguf", 60 * MiB)])
    for c in choices:
        estimate_choice(c, None, 2048, available_bytes=16 * GiB)
    assert recommend(choices).quant == "Q4_K_M"
    assert by_quant(choices)["Q8_0"].reason.startswith("Incomplete in this repo: 1 part(s) missing")


def test_unknown_shape_still_judges_the_weights():
    [c] = group_files([rf("m-Q4_K_M.gguf", 900 * MiB)])
    estimate_choice(c, None, 4096, available_bytes=16 * GiB)
    assert c.estimate_bytes == 900 * MiB + 32 * MiB
    assert "leaves out the memory for the context" in c.note


def test_choice_as_json():
    c = by_quant(judged(16 * GiB))["Q8_0"]
    data = c.to_dict()
    assert data["recommended"] is True and data["fit"]["status"] == "fits"
    assert data["fit"]["kv_cache_bytes"] == 128 * MiB and data["files"][0]["size"] == 1260 * MiB


# --- the header of a file on the hub ----------------------------------------------------------

def test_header_prefix_asks_for_more_until_it_parses(starter_model):
    data = starter_model.read_bytes()
    size = len(data)
    with pytest.raises(HeaderIncomplete) as short:
        read_gguf_header_prefix(data[:10], size, "x.gguf")
    assert short.value.needed == 24
    with pytest.raises(HeaderIncomplete) as more:
        read_gguf_header_prefix(data[:64 * KiB], size, "x.gguf")
    assert more.value.needed > 64 * KiB
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        read_gguf_header_prefix(b"<html>Not here</html>" + b" " * 100, 10_000, "x.gguf")
    with pytest.raises(ModelFileError, match="truncated"):
        read_gguf_header_prefix(data[:3 * MiB], 3 * MiB, "x.gguf")  # the listing says it is only 3 MiB


@pytest.fixture
def starter_repo(hub, starter_model):
    sha = hub.add_repo("org/starter-GGUF", {starter_model.name: starter_model, "README.md": "# starter"})
    return hub, sha


def listing_of(hub, repo_id: str, sha: str, config=None) -> RepoListing:
    files = [RemoteFile(path=f.path, size=f.size, sha256=f.sha256 if f.lfs else None)
             for f in hub.repos[repo_id].files.values()]
    return RepoListing(repo_id=repo_id, revision=sha, files=files, config=config)


def test_remote_header_reads_only_the_header(starter_repo, starter_model):
    hub, sha = starter_repo
    remote = RemoteFile(starter_model.name, starter_model.stat().st_size)
    info = read_remote_gguf_info("org/starter-GGUF", remote, sha)
    local = read_gguf_info(starter_model)
    assert {k: v for k, v in info.to_dict().items() if k != "path"} == \
        {k: v for k, v in local.to_dict().items() if k != "path"}
    assert hub.served("org/starter-GGUF", starter_model.name) == 2 * MiB  # of 94 MiB
    assert [r[2] for r in hub.requests if "/resolve/" in r[1]] == ["bytes=0-2097151"]


def test_remote_header_grows_its_range(starter_repo, starter_model, monkeypatch):
    from runtime.hub import choices

    hub, sha = starter_repo
    monkeypatch.setattr(choices, "HEADER_FIRST_BYTES", 256 * KiB)
    remote = RemoteFile(starter_model.name, starter_model.stat().st_size)
    info = read_remote_gguf_info("org/starter-GGUF", remote, sha)
    assert info.block_count == 30
    ranges = [r[2] for r in hub.requests if "/resolve/" in r[1]]
    assert len(ranges) >= 2 and ranges[0] == "bytes=0-262143"
    # each request continues where the last ended: no byte is fetched twice
    spans = [tuple(map(int, r.removeprefix("bytes=").split("-"))) for r in ranges]
    assert all(b[0] == a[1] + 1 for a, b in zip(spans, spans[1:]))
    assert hub.served("org/starter-GGUF", starter_model.name) == spans[-1][1] + 1 < 4 * MiB
    with pytest.raises(ModelFileError, match="larger than"):
        read_remote_gguf_info("org/starter-GGUF", remote, sha, max_bytes=512 * KiB)


def test_choices_for_the_starter_repo_match_the_local_estimate(starter_repo, starter_model):
    hub, sha = starter_repo
    [choice] = model_choices(listing_of(hub, "org/starter-GGUF", sha), 2048, available_bytes=8 * GiB)
    local = check_fit(read_gguf_info(starter_model), 2048, available_bytes=8 * GiB)
    assert choice.quant == "Q4_1" and choice.recommended
    assert choice.estimate_bytes == local.needed_bytes == estimate_model_memory(read_gguf_info(starter_model), 2048)
    assert choice.fit.kv_bytes == 45 * MiB
    # default context: the app's 4096, the model's own 8192 being larger
    [default] = model_choices(listing_of(hub, "org/starter-GGUF", sha), None, available_bytes=8 * GiB)
    assert default.fit.n_ctx == 4096


def test_split_model_shape_comes_from_its_first_part(hub, tmp_path):
    import gguf

    u16, u32 = gguf.GGUFValueType.UINT16, gguf.GGUFValueType.UINT32
    part1 = write_unknown_arch_gguf(tmp_path, filename="big-Q8_0-00001-of-00002.gguf",
                                    header={"split.count": (u16, 2), "{arch}.block_count": (u32, 40),
                                            "{arch}.context_length": (u32, 2048)})
    sha = hub.add_repo("org/split-GGUF", {part1.name: part1, "big-Q8_0-00002-of-00002.gguf": b"\0" * 5000})
    [choice] = model_choices(listing_of(hub, "org/split-GGUF", sha), 1024, available_bytes=GiB)
    assert choice.label == "Q8_0 (2 parts)" and choice.size_bytes == part1.stat().st_size + 5000
    # 40 layers (the header; the shard's tensors show only one), embedding 8, 2 heads of 4, 1 KV head:
    # KV = 2 bytes * 1024 * 40 * (4 + 4) = 655,360
    assert choice.fit.kv_bytes == 655_360
    assert choice.fit.weights_bytes == choice.size_bytes
    assert not any("/big-Q8_0-00002" in r[1] for r in hub.requests)  # the second part was never touched


def test_a_file_that_is_not_gguf_leaves_a_note(hub):
    sha = hub.add_repo("org/odd-GGUF", {"odd-Q4_K_M.gguf": b"<html>an error page</html>" + b" " * 4000})
    [choice] = model_choices(listing_of(hub, "org/odd-GGUF", sha), 2048, available_bytes=GiB)
    assert "not a GGUF file" in choice.note and "leaves out the memory" in choice.note
    assert choice.fit is not None and choice.estimate_bytes == choice.size_bytes + 32 * MiB


def test_an_empty_file_is_not_fetched(hub):
    sha = hub.add_repo("org/empty-GGUF", {"empty-Q4_K_M.gguf": b""})
    with pytest.raises(ModelFileError, match="too short"):
        read_remote_gguf_info("org/empty-GGUF", RemoteFile("empty-Q4_K_M.gguf", 0), sha)
    assert not [r for r in hub.requests if "/resolve/" in r[1]]


def test_gated_header_without_token_leaves_a_note_and_works_with_one(hub, starter_model):
    sha = hub.add_repo("org/gated-GGUF", {starter_model.name: starter_model}, gated="manual")
    listing = listing_of(hub, "org/gated-GGUF", sha)
    [anonymous] = model_choices(listing, 2048, available_bytes=8 * GiB)
    assert "gated" in anonymous.note and anonymous.fit.kv_bytes == 0
    [with_token] = model_choices(listing, 2048, available_bytes=8 * GiB, token=hub.token)
    assert with_token.fit.kv_bytes == 45 * MiB and not with_token.note


def test_checkpoint_choice_over_the_hub_uses_the_safetensors_headers(hub):
    import json
    import struct

    # a safetensors file whose header states 1,000,000 BF16 weights (data: 2,000,000 bytes)
    header = json.dumps({"w": {"dtype": "BF16", "shape": [1000, 1000], "data_offsets": [0, 2_000_000]}}).encode()
    blob = struct.pack("<Q", len(header)) + header + b"\0" * 2_000_000
    config = {**LLAMA, "torch_dtype": None}
    sha = hub.add_repo("org/ckpt", {"model.safetensors": blob, "config.json": json.dumps(config)})
    [cp] = model_choices(listing_of(hub, "org/ckpt", sha, config=config), 4096, available_bytes=16 * GiB)
    assert cp.kind == "checkpoint" and cp.dtype == "BF16"  # from the headers: config.json did not say
    assert cp.fit.weights_bytes == 2 * 1_000_000
    assert cp.estimate_bytes == 2_000_000 + EXTRA_4096


def test_a_new_context_length_judges_again_without_reading_the_header_again(hub, starter_model):
    sha = hub.add_repo("org/again-GGUF", {starter_model.name: starter_model})
    listing = listing_of(hub, "org/again-GGUF", sha)
    [short] = model_choices(listing, 2048, available_bytes=8 * GiB)
    reads = [r for r in hub.requests if "/resolve/" in r[1]]
    [long] = model_choices(listing, 8192, available_bytes=8 * GiB)
    assert [r for r in hub.requests if "/resolve/" in r[1]] == reads  # nothing fetched the second time
    assert (short.fit.kv_bytes, long.fit.kv_bytes) == (45 * MiB, 180 * MiB)
