"""``diaproto serve --model dia`` from the command line, on a tiny checkpoint saved here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_make_run import EXIT_LIMIT, free_port, read_until_url
from tiny_dia import EOS, save_tiny_dia

from diaproto.apps.cli import main

STEPS = 40
IMPORT_LIMIT = 120.0  # torch and transformers take seconds to import on a loaded machine


def test_dia_options_apply_to_the_dia_model_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--weights", "somewhere", "--max-requests", "2"]) == 2
    assert "--weights, --max-requests apply to --model dia only" in capsys.readouterr().err


def test_a_bad_window_plan_is_refused_before_loading(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--model", "dia", "--dia-window", "4,16"]) == 2
    assert "K0:R0,K:R,L" in capsys.readouterr().err


def test_serve_model_dia_from_a_local_checkpoint(tmp_path: Path) -> None:
    checkpoint = save_tiny_dia(tmp_path / "dia")
    # The checkpoint's own generation settings, as a real one has: short, greedy, no EOS.
    config = (checkpoint / "generation_config.json").read_text()
    assert '"eos_token_id": 1024' in config
    generation = config.rstrip().removesuffix("}").rstrip()
    generation += f',\n  "max_new_tokens": {STEPS},\n  "suppress_tokens": [{EOS}]\n}}\n'
    (checkpoint / "generation_config.json").write_text(generation)
    port = free_port()
    command = [sys.executable, "-m", "diaproto.apps.cli", "serve", "--port", str(port)]
    command += ["--model", "dia", "--weights", str(checkpoint), "--device", "cpu"]
    command += ["--dia-window", "4:10,16:10,12", "--max-requests", "3"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        url, output = read_until_url(process, port, IMPORT_LIMIT)
        assert "model dia" in output
        with httpx.Client(trust_env=False, timeout=IMPORT_LIMIT) as client:
            speech = client.post(
                url + "v1/audio/speech",
                json={
                    "model": "tts-1",
                    "voice": "alloy",
                    "input": "Hi.",
                    "response_format": "pcm",
                    "sample_rate": 44100,
                },
            )
            assert speech.status_code == 200
            assert len(speech.content) == (STEPS - 16) * 1024
            health = client.get(url + "healthz").text
            expected = "model dia: 0 running, 0 waiting, 0 in progress (limit 3), 0 refused"
            assert health == f"ok\n{expected}\n"
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=EXIT_LIMIT)
        output += rest.decode(errors="replace")
        assert process.returncode == 0, output
        assert "Traceback" not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=EXIT_LIMIT)
