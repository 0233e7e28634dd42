"""An ipywidgets front end for :func:`melody_utils.generate.generate` (notebook 05).

::

    ui = GenerationUI(model, normalizer, primers_from_pieces(splits["test"]))
    ui            # shows the controls in Jupyter

Pick a held-out chorale (or upload a MIDI file) as the primer, set the temperature,
top-k, top-p, length, number of variations and seed, and press *Generate*. The output
shows a piano roll per variation (primer and continuation in two colours), an audio
player and a ``.mid`` download link for each, with *show score* ticked the score
notation of each variation (primer and continuation, the continuation coloured; see
:mod:`melody_utils.notation`), and the degeneration measures next to the same measures
on real chorales of the same length (with ``training=`` pieces, also the copy check).

Nothing here raises into the notebook: a bad upload or a failed generation is shown as
a readable message (and kept in ``ui.last_error``). ``ui.last_result`` holds the last
:class:`~melody_utils.generate.GenerationResult`, ``ui.last_audio`` its waveforms;
``ui.generate()`` does what the button does, so tests and scripts can drive the UI.
"""

from __future__ import annotations

import base64
import html
import io
import re
import time
import warnings
from collections.abc import Mapping, Sequence

import ipywidgets as W
import numpy as np
import pandas as pd

from .audio import SAMPLE_RATE, audio_backend, play, render
from .config import SEQ_LEN
from .corpus import Piece
from .data import Normalizer
from .generate import GenerationResult, generate
from .metrics import CopyIndex, copy_reference, reference_stats, stats_table
from .model import MelodyLSTM
from .notation import score_svg
from .notes import BadInputError, file_stem, midi_to_bytes, parse_midi
from .plots import plot_piano_roll

UPLOAD_PREFIX = "upload: "
#: Rounding grid of the widget's scores, in quarter notes (0.5 = eighth notes). Generated
#: steps are point estimates that rarely fall on a 16th-note grid; eighths read better.
SCORE_GRID = 0.5
#: The most measures engraved per variation in the widget (a note says when more were cut).
SCORE_MAX_MEASURES = 24


def _bundle(data: dict[str, str]) -> dict:
    """One display_data output in the nbformat shape that ``Output.outputs`` holds."""
    return {"output_type": "display_data", "data": data, "metadata": {}}


def _html(text: str) -> dict:
    plain = html.unescape(re.sub(r"<[^>]+>", "", text))
    return _bundle({"text/html": text, "text/plain": plain})


def _error_html(message: str, title: str = "Could not generate") -> str:
    return (
        '<div style="color:#b00020;border-left:4px solid #b00020;padding:4px 8px">'
        f"<b>{html.escape(title)}:</b> {html.escape(message)}</div>"
    )


def midi_download_link(midi_bytes: bytes, filename: str, label: str | None = None) -> str:
    """An HTML link that downloads ``midi_bytes`` as ``filename`` (a data: URI, no file)."""
    b64 = base64.b64encode(midi_bytes).decode("ascii")
    label = label or f"download {filename}"
    return (
        f'<a download="{html.escape(filename)}" href="data:audio/midi;base64,{b64}">'
        f"{html.escape(label)}</a>"
    )


class GenerationUI:
    """Controls, piano rolls, audio players and MIDI links for generating with a model.

    Args:
        model: a (trained) :class:`~melody_utils.model.MelodyLSTM`.
        normalizer: its :class:`~melody_utils.data.Normalizer`.
        primers: ``{id: note table or Piece}`` offered in the primer menu (e.g.
            :func:`~melody_utils.generate.primers_from_pieces` of the test split), or a
            sequence of pieces.
        reference: real pieces for the degeneration reference column (default: the
            primers themselves, which are held-out pieces).
        training: the training pieces (or a :class:`~melody_utils.metrics.CopyIndex`
            already built from them): when given, every generation is checked for
            copying (its longest run of pitches also in the training set, next to the
            same figure for the reference pieces; see :class:`~melody_utils.metrics.CopyIndex`).
        n_notes: initial length of the generation.
        sample_rate: audio sample rate.
        cpu_threads: torch threads while generating on the CPU (see
            :func:`~melody_utils.generate.generate`); 1 keeps a click fast even on a
            busy machine, None leaves torch's setting alone.
        show_score: the initial state of the *show score* checkbox: when ticked, each
            variation is also engraved as a score (:func:`~melody_utils.notation.score_svg`,
            about a second per 64-note variation), shown below its audio player.

    The widget is ``ui.widget`` (a VBox); displaying ``ui`` itself shows it too.
    """

    def __init__(
        self,
        model: MelodyLSTM,
        normalizer: Normalizer,
        primers: Mapping[str, pd.DataFrame | Piece] | Sequence[Piece],
        reference: Sequence[Piece | pd.DataFrame] | None = None,
        *,
        training: Sequence[Piece | pd.DataFrame] | None = None,
        n_notes: int = 128,
        sample_rate: int = SAMPLE_RATE,
        max_notes: int = 512,
        max_variations: int = 8,
        cpu_threads: int | None = 1,
        show_score: bool = False,
    ):
        if not isinstance(primers, Mapping):
            primers = {p.id: p for p in primers}
        self.model = model
        self.normalizer = normalizer
        self.primers: dict[str, pd.DataFrame] = {
            str(k): (v.notes if isinstance(v, Piece) else v) for k, v in primers.items()
        }
        if not self.primers:
            raise ValueError("GenerationUI needs at least one primer")
        self.reference = (
            list(self.primers.values())
            if reference is None
            else [getattr(r, "notes", r) for r in reference]
        )
        if training is None or isinstance(training, CopyIndex):
            self.copy_index = training
        else:
            self.copy_index = CopyIndex(training)
        self.sample_rate = sample_rate
        self.cpu_threads = cpu_threads
        self.window = model.config.seq_len or SEQ_LEN
        self.last_result: GenerationResult | None = None
        self.last_audio: list[np.ndarray] = []
        self.last_error: str | None = None
        self.upload_messages: list[str] = []
        self.last_timings: dict[str, float] = {}
        self._reference_cache: dict[int, dict[str, float]] = {}

        style = {"description_width": "110px"}
        wide = W.Layout(width="420px")
        self.primer = W.Dropdown(
            options=list(self.primers), description="primer", style=style, layout=wide
        )
        self.upload = W.FileUpload(accept=".mid,.midi", multiple=False, description="upload MIDI")
        self.temperature = W.FloatSlider(
            value=1.0,
            min=0.0,
            max=2.0,
            step=0.05,
            description="temperature",
            style=style,
            layout=wide,
            readout_format=".2f",
        )
        self.top_k = W.IntSlider(
            value=0,
            min=0,
            max=model.config.vocab_size,
            description="top-k (0 = off)",
            style=style,
            layout=wide,
        )
        self.top_p = W.FloatSlider(
            value=1.0,
            min=0.05,
            max=1.0,
            step=0.05,
            description="top-p (1 = off)",
            style=style,
            layout=wide,
            readout_format=".2f",
        )
        self.n_notes = W.IntSlider(
            value=n_notes, min=1, max=max_notes, description="notes", style=style, layout=wide
        )
        self.n_variations = W.IntSlider(
            value=1, min=1, max=max_variations, description="variations", style=style, layout=wide
        )
        self.seed = W.BoundedIntText(
            value=0,
            min=0,
            max=2**31 - 1,
            description="seed",
            style=style,
            layout=W.Layout(width="220px"),
        )
        self.show_score = W.Checkbox(
            value=bool(show_score),
            description="show score",
            indent=False,
            layout=W.Layout(width="120px"),
        )
        self.generate_button = W.Button(
            description="Generate", button_style="primary", icon="music"
        )
        self.status = W.HTML(value=f"audio: {audio_backend()} synthesizer")
        self.output = W.Output()
        self.generate_button.on_click(lambda _button: self.generate())
        self.upload.observe(self._on_upload, names="value")
        self.widget = W.VBox(
            [
                W.HBox([self.primer, self.upload]),
                self.temperature,
                self.top_k,
                self.top_p,
                self.n_notes,
                self.n_variations,
                W.HBox([self.seed, self.show_score, self.generate_button]),
                self.status,
                self.output,
            ]
        )

    # ---------------------------------------------------------------- display

    def _repr_mimebundle_(self, **kwargs: object) -> dict | None:
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def settings(self) -> dict:
        """The generation arguments the controls currently describe."""
        return {
            "n_notes": int(self.n_notes.value),
            # sliders hold binary floats (0.9000000000000001): round to their step
            "temperature": round(float(self.temperature.value), 4),
            "top_k": int(self.top_k.value) or None,
            "top_p": None if self.top_p.value >= 1.0 else round(float(self.top_p.value), 4),
            "n_variations": int(self.n_variations.value),
            "seed": int(self.seed.value),
        }

    def _show_error(self, message: str, title: str = "Could not generate") -> None:
        """Show one error message, in the status line (once, nowhere else)."""
        self.last_error = message
        self.status.value = _error_html(message, title)

    # ---------------------------------------------------------------- uploads

    def load_midi_bytes(self, data: bytes, name: str = "upload.mid") -> str:
        """Add an uploaded MIDI file as a primer and select it; return its menu key.

        What the MIDI library warned about the file is kept in ``self.upload_messages``.

        Raises:
            BadInputError: empty or unreadable MIDI, no pitched notes, or fewer notes
                than the model's window.
        """
        try:
            parsed = parse_midi(bytes(data))
        except BadInputError as exc:
            raise BadInputError(f"{name}: {exc}") from exc
        notes = parsed.notes
        if len(notes) < self.window:
            raise BadInputError(
                f"{name} has {len(notes)} notes; a primer needs at least "
                f"{self.window} (the model's context window)"
            )
        key = UPLOAD_PREFIX + name
        self.primers[key] = notes
        self.upload_messages = [f"{name}: {m}" for m in parsed.warnings] + [
            f"{name}: dropped {n} {reason}" for reason, n in parsed.dropped.items()
        ]
        self.primer.options = list(self.primers)
        self.primer.value = key
        return key

    def _on_upload(self, change: dict) -> None:
        files = change.get("new") or ()
        if isinstance(files, Mapping):  # ipywidgets 7: {name: {"content": ...}}
            files = [{"name": k, **v} for k, v in files.items()]
        for item in files:
            name = str(item.get("name", "upload.mid"))
            try:
                content = item["content"]
                data = content.tobytes() if hasattr(content, "tobytes") else bytes(content)
                key = self.load_midi_bytes(data, name)
            except Exception as exc:  # every upload problem becomes a message
                self._show_error(
                    str(exc)
                    if isinstance(exc, BadInputError)
                    else f"{name}: {type(exc).__name__}: {exc}",
                    title="Could not load the upload",
                )
            else:
                self.last_error = None
                notes = "".join(f"<br>{html.escape(m)}" for m in self.upload_messages)
                self.status.value = (
                    f"loaded <b>{html.escape(name)}</b>: {len(self.primers[key])} notes{notes}"
                )
        if files:
            # forget the upload, so that choosing the same file again is a change too
            self.upload.value = ()

    # ---------------------------------------------------------------- generation

    def _reference(self, n_notes: int) -> dict[str, float] | None:
        if not self.reference:
            return None
        if n_notes not in self._reference_cache:
            ref = reference_stats(self.reference, n_notes)
            if self.copy_index is not None:
                try:  # real windows of this length: the copy check's yardstick
                    runs = copy_reference(self.copy_index, self.reference, n_notes)
                except ValueError:  # no reference piece is that long
                    pass
                else:  # averaged as the other rows: windows within a piece, then pieces
                    per_piece = pd.Series(runs.runs).groupby(runs.piece_ids, sort=False).mean()
                    ref["copied_run"] = float(per_piece.mean())
            self._reference_cache[n_notes] = ref
        return self._reference_cache[n_notes]

    def generate(self) -> GenerationResult | None:
        """Generate with the current settings and show the result (what the button does).

        Returns the result, or None after showing an error message.
        """
        self.generate_button.disabled = True
        self.status.value = "generating…"
        try:
            return self._generate()
        except Exception as exc:  # shown in the UI, never a traceback
            msg = (
                str(exc)
                if isinstance(exc, ValueError | RuntimeError)
                else f"{type(exc).__name__}: {exc}"
            )
            self.output.outputs = ()  # no stale result beside the error
            self._show_error(msg)
            return None
        finally:
            self.generate_button.disabled = False

    def _generate(self) -> GenerationResult:
        key = self.primer.value
        if key not in self.primers:
            raise ValueError("choose a primer first")
        settings = self.settings
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # what generate warns about is in result.messages
            warnings.simplefilter("ignore", UserWarning)
            result = generate(
                self.model,
                self.normalizer,
                self.primers[key],
                **settings,
                cpu_threads=self.cpu_threads,
                copy_index=self.copy_index,
            )
        t1 = time.perf_counter()
        waves = [render(pm, self.sample_rate) for pm in result.midi]
        players = [play(w, self.sample_rate) for w in waves]
        t2 = time.perf_counter()
        png = self._piano_rolls(result, key)
        table = stats_table(result.stats, self._reference(settings["n_notes"]))
        t3 = time.perf_counter()
        scores = self._scores(result) if self.show_score.value else [[] for _ in result.notes]
        t4 = time.perf_counter()

        stem = file_stem(key.removeprefix(UPLOAD_PREFIX))
        top_p = "off" if settings["top_p"] is None else f"{settings['top_p']:.2f}"
        header = (
            f"<b>{html.escape(key)}</b>: {settings['n_notes']} notes × "
            f"{settings['n_variations']} variation(s), temperature "
            f"{settings['temperature']:.2f}, top-k {settings['top_k'] or 'off'}, top-p "
            f"{top_p}, seed {result.seed}"
        )
        if settings["temperature"] == 0 and settings["n_variations"] > 1:
            header += (
                "<br><i>Temperature 0 is greedy decoding: always the most likely pitch, so "
                "every variation is the same. Raise the temperature for different ones.</i>"
            )
        for message in result.messages:
            header += f"<br><i>{html.escape(message)}</i>"
        outputs = [_html(header)]
        outputs.append(
            _bundle({"image/png": png, "text/plain": f"<piano rolls of {len(result)} variations>"})
        )
        for i, (player, pm, score) in enumerate(zip(players, result.midi, scores, strict=True)):
            link = midi_download_link(
                midi_to_bytes(pm),
                f"{stem}_seed{result.seed}_v{i + 1}.mid",
                f"download variation {i + 1} (.mid)",
            )
            outputs.append(_html(f"<div><b>variation {i + 1}</b> {link}</div>"))
            outputs.append(
                _bundle(
                    {"text/html": player._repr_html_(), "text/plain": f"<audio: variation {i + 1}>"}
                )
            )
            outputs.extend(score)
        outputs.append(
            _html(
                "<b>degeneration measures</b> (continuation only; real "
                "pieces cut into windows of the same length)"
            )
        )
        outputs.append(_bundle({"text/html": table.to_html(), "text/plain": table.to_string()}))
        # Empty first: a click that repeats the last settings and seed builds equal outputs,
        # and traitlets sends nothing for an equal value, so the browser would keep the old
        # output area and show no sign that the click did anything.
        self.output.outputs = ()
        self.output.outputs = tuple(outputs)

        self.last_result, self.last_audio, self.last_error = result, waves, None
        self.last_timings = {
            "generate": t1 - t0,
            "audio": t2 - t1,
            "plots": t3 - t2,
            "scores": t4 - t3,
            "total": time.perf_counter() - t0,
        }
        scored = f", scores {t4 - t3:.2f} s" if self.show_score.value else ""
        self.status.value = (
            f"done in {self.last_timings['total']:.2f} s (generation "
            f"{t1 - t0:.2f} s, audio {t2 - t1:.2f} s{scored}, "
            f"{audio_backend()} synthesizer)"
        )
        return result

    def _scores(self, result: GenerationResult) -> list[list[dict]]:
        """The outputs of each variation's score: the SVG (primer, then the continuation
        coloured) and a note when measures were left out, or a short message where it
        could not be engraved (the rest of the result still shows)."""
        out = []
        for i, notes in enumerate(result.notes):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    svg = score_svg(
                        notes,
                        split_at=result.split_at,
                        grid=SCORE_GRID,
                        max_measures=SCORE_MAX_MEASURES,
                    )
                except Exception as exc:  # a score is a view: never lose the result for it
                    out.append(
                        [
                            _html(
                                f"<i>variation {i + 1}: no score "
                                f"({html.escape(type(exc).__name__)}: {html.escape(str(exc))})</i>"
                            )
                        ]
                    )
                    continue
            shown = [_bundle({"image/svg+xml": svg, "text/plain": f"<score: variation {i + 1}>"})]
            shown += [
                _html(f"<i>variation {i + 1}: {html.escape(str(w.message))}</i>")
                for w in caught
                if "max_measures" in str(w.message)
            ]
            out.append(shown)
        return out

    def _piano_rolls(self, result: GenerationResult, title: str) -> str:
        """Base64 PNG of one piano roll per variation (no pyplot: nothing leaks into
        the notebook's own output)."""
        from matplotlib.figure import Figure

        n = len(result)
        height = 2.4 * n + 0.7
        fig = Figure(figsize=(11, height))
        fig.subplots_adjust(
            left=0.07, right=0.86, top=1 - 0.35 / height, bottom=0.45 / height, hspace=0.35
        )
        axes = np.atleast_1d(fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0])
        for i, (ax, notes) in enumerate(zip(axes, result.notes, strict=True)):
            plot_piano_roll(
                notes,
                ax=ax,
                split_at=result.split_at,
                title=f"{title}: variation {i + 1}" if i == 0 else f"variation {i + 1}",
            )
            if i < n - 1:
                ax.set_xlabel("")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=72)
        return base64.b64encode(buf.getvalue()).decode("ascii")
