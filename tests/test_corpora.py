import json
import threading
import traceback
import urllib.error
import urllib.request
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from conftest import SMALL_SPLIT, write_split
from openmed_repro.infra import paths
from openmed_repro.data import corpora
from openmed_repro.data import downloads
from openmed_repro.errors import OpenMedError

PAPER_KEYS = {"bc4chemd", "bc5cdr_chem", "bc5cdr_disease", "ncbi_disease", "jnlpba", "bc2gm", "linnaeus",
              "s800", "anatem", "bionlp13cg", "cll", "fsu"}


def test_registry_lists_the_papers_twelve_corpora_with_three_splits_each():
    registry = corpora.registry()
    assert set(registry) == PAPER_KEYS
    for spec in registry.values():
        assert set(spec.splits) == {"train", "devel", "test"}


def test_every_shipped_mtl_corpus_has_a_pinned_download_url_and_blob_id():
    for key in ("bc4chemd", "bc5cdr_chem", "bc5cdr_disease", "ncbi_disease", "jnlpba", "bc2gm", "linnaeus",
                "anatem", "bionlp13cg"):
        for split in corpora.spec(key).splits.values():
            assert split.url.startswith("https://raw.githubusercontent.com/cambridgeltl/MTL-Bioinformatics-2016/")
            assert len(split.git_blob) == 40


def test_unknown_dataset_is_an_error_listing_the_known_ones():
    with pytest.raises(OpenMedError, match=r"unknown dataset 'bc5cdr_chemical'.*bc5cdr_chem"):
        corpora.load("bc5cdr_chemical")


def test_any_directory_with_three_splits_loads_without_a_registry_entry(corpus_dir):
    corpus = corpora.load(corpus_dir)
    assert corpus.key == "mycorpus"
    assert len(corpus.train) == len(corpus.devel) == len(corpus.test) == 2
    assert corpus.labels == ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]
    assert corpus.files["test"].sha256 == downloads.sha256(corpus_dir / "test.tsv")
    assert corpus.files["test"].verified_as.startswith("unverified")


def test_a_directory_missing_a_split_names_the_missing_file(corpus_dir):
    (corpus_dir / "devel.tsv").unlink()
    with pytest.raises(OpenMedError, match="missing devel.tsv"):
        corpora.load(corpus_dir)


def test_repair_is_passed_through_and_counted_per_split(tmp_path):
    directory = tmp_path / "broken"
    write_split(directory / "train.tsv", [[("a", "I-X"), ("b", "O")]])
    write_split(directory / "devel.tsv", SMALL_SPLIT)
    write_split(directory / "test.tsv", SMALL_SPLIT)
    with pytest.raises(OpenMedError, match="train.tsv:1"):
        corpora.load(directory)
    corpus = corpora.load(directory, repair=True)
    assert corpus.train[0].tags == ["B-X", "O"]
    assert corpus.files["train"].repaired == 1 and corpus.files["test"].repaired == 0


def test_a_private_corpus_loads_from_a_users_data_dir(tmp_path):
    for split in ("train", "devel", "test"):
        write_split(tmp_path / "fsu" / f"{split}.tsv", SMALL_SPLIT)
    corpus = corpora.load("fsu", data_dir=tmp_path)
    assert corpus.directory == tmp_path / "fsu"
    assert corpus.files["train"].verified_as == "unverified: no reference checksum in the registry"


def test_data_dir_may_point_straight_at_the_corpus_directory(tmp_path):
    for split in ("train", "devel", "test"):
        write_split(tmp_path / f"{split}.tsv", SMALL_SPLIT)
    assert corpora.load("fsu", data_dir=tmp_path).directory == tmp_path


def test_environment_variable_is_used_when_no_data_dir_is_given(tmp_path, monkeypatch):
    for split in ("train", "devel", "test"):
        write_split(tmp_path / "fsu" / f"{split}.tsv", SMALL_SPLIT)
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path))
    assert corpora.locate("fsu") == tmp_path / "fsu"


def test_explicit_data_dir_wins_over_the_environment(tmp_path, monkeypatch):
    for split in ("train", "devel", "test"):
        write_split(tmp_path / "mine" / "fsu" / f"{split}.tsv", SMALL_SPLIT)
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    assert corpora.locate("fsu", data_dir=tmp_path / "mine") == tmp_path / "mine" / "fsu"


def test_missing_private_corpus_says_what_is_missing_and_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SHARED_DATA_DIR", tmp_path / "no-shared-data")
    with pytest.raises(OpenMedError, match=r"(?s)fsu \(FSU\) is not available: no train.tsv/devel.tsv/test.tsv.*OPENMED_DATA_DIR"):
        corpora.load("fsu")


def test_explicit_data_dir_without_the_corpus_is_an_error_not_a_download(tmp_path):
    write_split(tmp_path / "bc4chemd" / "train.tsv", SMALL_SPLIT)
    with pytest.raises(OpenMedError, match=r"missing devel.tsv, test.tsv in .*bc4chemd \(from data_dir\)"):
        corpora.load("bc4chemd", data_dir=tmp_path)


def test_registry_corpus_with_unknown_checksum_is_refused_unless_verify_is_off(tmp_path):
    for split in ("train", "devel", "test"):
        write_split(tmp_path / "ncbi_disease" / f"{split}.tsv", SMALL_SPLIT)
    with pytest.raises(OpenMedError, match=r"ncbi_disease/train.tsv: checksum mismatch.*verify=False"):
        corpora.load("ncbi_disease", data_dir=tmp_path)
    corpus = corpora.load("ncbi_disease", data_dir=tmp_path, verify=False)
    assert corpus.files["train"].verified_as == "unverified: checksum mismatch accepted (verify=False)"


def test_git_blob_id_equals_what_git_hash_object_prints(tmp_path):
    path = tmp_path / "hello.txt"
    path.write_bytes(b"hello\n")
    assert downloads.git_blob_id(path) == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_statistics_count_sentences_tokens_and_mentions_per_type(corpus_dir):
    stats = corpora.statistics(corpora.load(corpus_dir))
    assert stats.loc["train", "sentences"] == 2
    assert stats.loc["train", "tokens"] == 7
    assert stats.loc["train", "mentions"] == 2
    assert stats.loc["devel", "mentions Disease"] == 1


def test_statistics_table_puts_the_papers_split_sizes_beside_the_counts(tmp_path):
    for split in ("train", "devel", "test"):
        write_split(tmp_path / "s800" / f"{split}.tsv", SMALL_SPLIT)
    table = corpora.statistics_table([corpora.load("s800", data_dir=tmp_path, verify=False)])
    assert table.loc["s800", "sentences train/devel/test"] == "2 / 2 / 2"
    assert table.loc["s800", "paper's split sizes"] == "640 / 80 / 80"


# --- downloads, served from 127.0.0.1 -----------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    def __init__(self, *args, files, **kwargs):
        self.files = files
        super().__init__(*args, **kwargs)

    def do_GET(self):
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        content, announced = body if isinstance(body, tuple) else (body, len(body))
        self.send_response(200)
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(content)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    files: dict = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, files=files))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    httpd.shutdown()
    httpd.server_close()


def _blob(content: bytes, tmp_path) -> str:
    path = tmp_path / "blob-source"
    path.write_bytes(content)
    return downloads.git_blob_id(path)


@pytest.fixture
def remote_registry(tmp_path, monkeypatch, server):
    """A registry with one corpus served by the local server; no shared copy, an empty cache."""
    base, files = server
    content = "Aspirin\tB-Chemical\nhelps\tO\n".encode()
    splits = {}
    for split in ("train", "devel", "test"):
        files[f"/{split}.tsv"] = content
        splits[split] = {"file": f"{split}.tsv", "url": f"{base}/{split}.tsv", "git_blob": _blob(content, tmp_path)}
    parameters = tmp_path / "parameters"
    parameters.mkdir()
    (parameters / "corpora.yaml").write_text(yaml.safe_dump(
        {"corpora": {"remote": {"name": "Remote", "entity_types": ["Chemical"], "splits": splits}}}))
    monkeypatch.setattr(paths, "PARAMETERS_DIR", parameters)
    monkeypatch.setattr(paths, "SHARED_DATA_DIR", tmp_path / "no-shared-data")
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(paths.DATA_DIR_ENV, raising=False)
    corpora.registry.cache_clear()
    yield files, tmp_path / "cache" / "corpora" / "remote"
    corpora.registry.cache_clear()


def test_a_missing_corpus_is_downloaded_into_the_cache_and_verified(remote_registry):
    _, cache = remote_registry
    corpus = corpora.load("remote")
    assert corpus.directory == cache
    assert corpus.train[0].tokens == ["Aspirin", "helps"]
    assert corpus.files["train"].verified_as == "git blob of the upstream file"


def test_a_download_with_the_wrong_checksum_is_an_error_and_leaves_nothing(remote_registry):
    files, cache = remote_registry
    files["/devel.tsv"] = b"Aspirin\tO\n"
    with pytest.raises(OpenMedError, match=r"devel.tsv: checksum mismatch .* discarded"):
        corpora.load("remote")
    assert not cache.exists()  # not even train.tsv, downloaded before devel.tsv failed


def test_an_interrupted_download_is_an_error_and_leaves_nothing(remote_registry):
    files, cache = remote_registry
    files["/test.tsv"] = (b"Aspirin\tB-Chem", 400)  # the server announces 400 bytes and hangs up early
    with pytest.raises(OpenMedError, match=r"test.tsv: partial download \(14 of 400 bytes\)"):
        corpora.load("remote")
    assert not cache.exists()


def test_a_failed_download_is_retried_on_the_next_load(remote_registry):
    files, _ = remote_registry
    good = files["/test.tsv"]
    files["/test.tsv"] = b"tampered\tO\n"
    with pytest.raises(OpenMedError):
        corpora.load("remote")
    files["/test.tsv"] = good
    assert corpora.load("remote").test[0].tokens == ["Aspirin", "helps"]


def test_a_cached_file_corrupted_later_is_not_trusted(remote_registry):
    _, cache = remote_registry
    corpora.load("remote")
    (cache / "train.tsv").write_text("Aspirin\tO\n")
    with pytest.raises(OpenMedError, match="train.tsv: checksum mismatch"):
        corpora.load("remote")


def test_an_unreachable_host_fails_fast_with_advice(remote_registry, monkeypatch, tmp_path):
    corpora.registry.cache_clear()
    text = (paths.PARAMETERS_DIR / "corpora.yaml").read_text().replace("http://127.0.0.1", "http://127.0.0.1:1#")
    (paths.PARAMETERS_DIR / "corpora.yaml").write_text(text)
    with pytest.raises(OpenMedError, match=r"(?s)remote \(Remote\) is not available.*download failed.*OPENMED_DATA_DIR"):
        corpora.load("remote")



@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No shared copy, no data directory, an empty cache in tmp_path, and every download failing as it does
    without a network."""
    def unreachable(url, timeout):
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    monkeypatch.setattr(paths, "SHARED_DATA_DIR", tmp_path / "no-shared-data")
    monkeypatch.setenv(paths.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(paths.DATA_DIR_ENV, raising=False)
    return tmp_path


def test_a_corpus_that_cannot_be_downloaded_says_what_is_missing_where_it_looked_and_how_to_supply_it(offline):
    with pytest.raises(OpenMedError) as raised:
        corpora.load("bc4chemd")
    message = str(raised.value)
    assert message.startswith("corpus bc4chemd (BC4CHEMD) is not available: no train.tsv/devel.tsv/test.tsv found.")
    assert f"{offline / 'no-shared-data' / 'bc4chemd'} (the shared copy): not there" in message
    assert f"{offline / 'cache' / 'corpora' / 'bc4chemd'} (the download cache): the verified download failed" in message
    assert "Name or service not known" in message
    assert "-p data_dir <dir>" in message and "OPENMED_DATA_DIR=<dir>" in message and "network" in message
    assert "let the package download" not in message


def test_a_failed_download_is_reported_alone_without_a_chained_traceback(offline):
    with pytest.raises(OpenMedError) as raised:
        corpora.load("bc4chemd")
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert "The above exception was the direct cause" not in "".join(traceback.format_exception(raised.value))


def test_a_failed_download_leaves_no_cache_directory_behind(offline):
    with pytest.raises(OpenMedError):
        corpora.load("bc4chemd")
    assert not (offline / "cache").exists()


def test_a_failed_download_keeps_a_cache_directory_that_was_there_before(offline):
    (offline / "cache" / "corpora").mkdir(parents=True)
    with pytest.raises(OpenMedError):
        corpora.load("bc4chemd")
    assert list((offline / "cache").iterdir()) == [offline / "cache" / "corpora"]
    assert not list((offline / "cache" / "corpora").iterdir())

# --- the shared copies of this workplace ----------------------------------------------------------------

SHARED_STATS = paths.SHARED_DATA_DIR / "stats.jsonl"


@pytest.mark.skipif(not SHARED_STATS.is_file(), reason=f"no shared corpora at {paths.SHARED_DATA_DIR}")
def test_every_shared_corpus_loads_verifies_and_matches_the_published_counts(monkeypatch):
    monkeypatch.delenv(paths.DATA_DIR_ENV, raising=False)
    expected = {json.loads(line)["file"]: json.loads(line) for line in SHARED_STATS.read_text().splitlines()}
    keys = sorted({name.split("/")[0] for name in expected})
    assert len(keys) == 10
    for key in keys:
        corpus = corpora.load(key)
        assert corpus.directory == paths.SHARED_DATA_DIR / key
        stats = corpora.statistics(corpus)
        for split in ("train", "devel", "test"):
            published = expected[f"{key}/{split}.tsv"]
            assert corpus.files[split].verified_as == "sha256 of the shared copy"
            assert stats.loc[split, "sentences"] == published["sentences"]
            assert stats.loc[split, "tokens"] == published["tokens"]
            for kind, count in published["entities"].items():
                assert stats.loc[split, f"mentions {kind}"] == count, (key, split, kind)


def test_only_the_splits_asked_for_are_read_and_an_unknown_split_is_named(corpus_dir):
    loaded = corpora.load(corpus_dir, splits=("train", "devel"))
    assert set(loaded.splits) == {"train", "devel"} and set(loaded.files) == {"train", "devel"}
    with pytest.raises(OpenMedError, match="splits \\['dev'\\] unknown; valid: train, devel, test"):
        corpora.load(corpus_dir, splits=("train", "dev"))
