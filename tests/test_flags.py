"""flags.py: flag words in, the AWS CLI's options out."""
import re
from pathlib import Path

import pytest

from datakit_data import flags
from datakit_data.exceptions import FlagError


def test_flag_words_become_options_in_order_without_duplicates():
    options = flags.parse_flags(["delete", "dryrun", "delete", "No-Progress", "force"], "push")
    assert options.words == ("delete", "dryrun", "no-progress", "force")
    assert (options.delete, options.dryrun, options.force, options.follow_symlinks) == (True, True, True, True)
    assert options.cli == ["--no-progress"]
    assert flags.parse_flags(["no-follow-symlinks", "no-sign-request", "size-only"], "pull").cli == [
        "--no-follow-symlinks", "--no-sign-request",
    ]


@pytest.mark.parametrize("word", ["exclude", "endpoint-url", "profile", "storage-class"])
def test_value_options_are_refused(word):
    with pytest.raises(FlagError, match=f'"{word}" takes a value'):
        flags.parse_flags([word], "push")


def test_unknown_word_gets_a_did_you_mean():
    with pytest.raises(FlagError, match='Did you mean "delete"'):
        flags.parse_flags(["delet"], "pull")


#: The flag words the usage page promises (docs/usage.rst, "Accepted words"), written
#: out here rather than read from the code, so that dropping one from the code fails.


DOCUMENTED_FLAG_WORDS = [
    "delete", "dryrun", "exact-timestamps", "follow-symlinks", "force-glacier-transfer",
    "ignore-glacier-warnings", "no-follow-symlinks", "no-guess-mime-type", "no-progress",
    "only-show-errors", "quiet", "size-only", "debug", "no-sign-request", "force",
]


@pytest.mark.parametrize("word", DOCUMENTED_FLAG_WORDS)
def test_every_documented_flag_word_is_accepted(word):
    assert flags.parse_flags([word], "push").words == (word,)
    assert flags.parse_flags([word.upper()], "pull").words == (word,)


def test_the_usage_page_lists_exactly_the_documented_flag_words():
    text = (Path(__file__).parent.parent / "docs" / "usage.rst").read_text()
    listed = text.split("Accepted words:", 1)[1].split("``delete``, ``dryrun`` and ``force``", 1)[0]
    assert sorted(re.findall(r"``([a-z-]+)``", listed)) == sorted(DOCUMENTED_FLAG_WORDS)
