"""Progress reporting: plain lines off a terminal, a rich bar on one."""

from __future__ import annotations

import io

from radialog_instruct.tasks.generation.progress import GenerationProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    with GenerationProgress(10, 4, interval_s=0.0, stream=stream) as progress:
        progress.advance(2, 64)
        progress.advance(4, 128)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("generate: 6/10 requests (60.0%), ") and lines[0].endswith(" tok/s")
    assert lines[-1].startswith("generate: 10/10 requests (100.0%)")
    assert progress.tokens == 192 and progress.tokens_per_s > 0


def test_rich_bar_on_a_terminal():
    stream = Terminal()
    with GenerationProgress(10, 0, stream=stream) as progress:
        progress.advance(10, 320)
    text = stream.getvalue()
    assert "10/10" in text and "tok/s" in text and "generate: 10/10 requests" not in text
