"""An ipywidgets front end for :func:`melody_utils.generate.generate` (notebook 05): pick or
upload a primer, set the sampling, *Generate*: piano rolls, MIDI links, players, scores and the
measures beside real pieces. Nothing raises: errors are a red message (``ui.last_error``)."""

from __future__ import annotations

import base64
import html
import io
import re
import time
import warnings
from collections.abc import Mapping, Sequence

import ipywidgets as W

from .audio import SAMPLE_RATE, audio_backend, play
from .config import SEQ_LEN
from .data import Piece
from .generate import GenerationResult, generate
from .metrics import CopyIndex, reference_stats, stats_table
from .notation import score_svg
from .notes import BadInputError, file_stem, parse_midi
from .plots import plot_piano_roll

UPLOAD_PREFIX = "upload: "
_RED_BOX = "color:#b00020;border-left:4px solid #b00020;padding:4px 8px"
_SAME = "Temperature 0 always takes the most likely pitch: every variation is the same."


def _out(data: dict[str, str]) -> dict:
    """One display_data output in the shape ``Output.outputs`` holds."""
    return {"output_type": "display_data", "data": data, "metadata": {}}


def _html(text: str) -> dict:
    return _out({"text/html": text, "text/plain": html.unescape(re.sub(r"<[^>]+>", "", text))})


def midi_download_link(data: bytes, filename: str, label: str | None = None) -> str:
    """An HTML link that downloads ``data`` as ``filename`` (a data: URI, no file)."""
    b64 = base64.b64encode(data).decode("ascii")
    text = html.escape(label or "download " + filename)
    return f'<a download="{html.escape(filename)}" href="data:audio/midi;base64,{b64}">{text}</a>'


class GenerationUI:
    """Controls and results for one model: ``primers`` ``{id: table or Piece}`` or pieces;
    ``reference`` real pieces for the measures (default: the primers); ``training`` pieces or a
    :class:`~melody_utils.metrics.CopyIndex` for the copy check."""

    def __init__(
        self,
        model,
        normalizer,
        primers: Mapping | Sequence[Piece],
        reference=None,
        *,
        training=None,
        n_notes: int = 128,
        sample_rate: int = SAMPLE_RATE,
        max_notes: int = 512,
        max_variations: int = 8,
        cpu_threads: int | None = 1,
        show_score: bool = False,
    ):
        if not isinstance(primers, Mapping):
            primers = {p.id: p for p in primers}
        self.primers = {str(k): getattr(v, "notes", v) for k, v in primers.items()}
        if not self.primers:
            raise ValueError("GenerationUI needs at least one primer")
        self.model, self.normalizer = model, normalizer
        self.sample_rate, self.cpu_threads = sample_rate, cpu_threads
        references = list(self.primers.values()) if reference is None else reference
        self.reference = [getattr(r, "notes", r) for r in references]
        is_index = training is None or isinstance(training, CopyIndex)
        self.copy_index = training if is_index else CopyIndex(training)
        self.window = model.config.seq_len or SEQ_LEN
        self.last_result: GenerationResult | None = None
        self.last_audio, self.upload_messages, self.last_timings = [], [], {}
        self.last_error: str | None = None
        self._references: dict[int, dict | None] = {}
        style = {"description_width": "110px"}

        def control(kind, description: str, width: str = "420px", **kw):
            return kind(description=description, style=style, layout=W.Layout(width=width), **kw)

        vocab = model.config.vocab_size
        self.primer = control(W.Dropdown, "primer", options=list(self.primers))
        self.upload = W.FileUpload(accept=".mid,.midi", multiple=False, description="upload MIDI")
        self.temperature = control(W.FloatSlider, "temperature", value=1, min=0, max=2, step=0.05)
        self.top_k = control(W.IntSlider, "top-k (0 = off)", value=0, min=0, max=vocab)
        self.top_p = control(W.FloatSlider, "top-p (1 = off)", value=1, min=0.05, max=1, step=0.05)
        self.n_notes = control(W.IntSlider, "notes", value=n_notes, min=1, max=max_notes)
        self.n_variations = control(W.IntSlider, "variations", value=1, min=1, max=max_variations)
        self.seed = control(W.BoundedIntText, "seed", "220px", value=0, min=0, max=2**31 - 1)
        checkbox = dict(description="show score", indent=False, layout=W.Layout(width="120px"))
        self.show_score = W.Checkbox(value=bool(show_score), **checkbox)
        button = W.Button(description="Generate", button_style="primary", icon="music")
        self.generate_button = button
        self.status = W.HTML(value=f"audio: {audio_backend()} synthesizer")
        self.output = W.Output()
        self.generate_button.on_click(lambda _: self.generate())
        self.upload.observe(self._on_upload, names="value")
        controls = [self.temperature, self.top_k, self.top_p, self.n_notes, self.n_variations]
        buttons = W.HBox([self.seed, self.show_score, self.generate_button])
        rows = [W.HBox([self.primer, self.upload]), *controls, buttons, self.status]
        self.widget = W.VBox([*rows, self.output])

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    @property
    def settings(self) -> dict:
        """The generation arguments the controls describe now (slider floats rounded)."""
        top_p, temperature = (round(float(w.value), 4) for w in (self.top_p, self.temperature))
        s = {"n_notes": int(self.n_notes.value), "temperature": temperature}
        s.update(top_k=int(self.top_k.value) or None, top_p=None if top_p >= 1 else top_p)
        return {**s, "n_variations": int(self.n_variations.value), "seed": int(self.seed.value)}

    def _error(self, message: str, title: str = "Could not generate") -> None:
        self.last_error = message
        text = f"<b>{html.escape(title)}:</b> {html.escape(message)}"
        self.status.value = f'<div style="{_RED_BOX}">{text}</div>'

    def load_midi_bytes(self, data: bytes, name: str = "upload.mid") -> str:
        """Add a MIDI primer, select it, return its key; BadInputError if unreadable or short."""
        try:
            parsed = parse_midi(bytes(data))
        except BadInputError as exc:
            raise BadInputError(f"{name}: {exc}") from exc
        if len(parsed.notes) < self.window:
            raise BadInputError(f"{name}: {len(parsed.notes)} notes; a primer needs {self.window}")
        key = UPLOAD_PREFIX + name
        self.primers[key] = parsed.notes
        self.upload_messages = [f"{name}: dropped {n} {why}" for why, n in parsed.dropped.items()]
        self.primer.options = list(self.primers)
        self.primer.value = key
        return key

    def _on_upload(self, change: dict) -> None:
        files = change.get("new") or ()
        for item in files:
            name = str(item.get("name", "upload.mid"))
            try:
                key = self.load_midi_bytes(bytes(item["content"]), name)
            except BadInputError as exc:
                self._error(str(exc), "Could not load the upload")
            except Exception as exc:  # every upload problem becomes a message
                self._error(f"{name}: {type(exc).__name__}: {exc}", "Could not load the upload")
            else:
                self.last_error = None
                extra = "".join(f"<br>{html.escape(m)}" for m in self.upload_messages)
                notes = len(self.primers[key])
                self.status.value = f"loaded <b>{html.escape(name)}</b>: {notes} notes{extra}"
        if files:
            self.upload.value = ()  # choosing the same file again is a change too

    def _reference(self, n_notes: int) -> dict | None:
        """The real pieces' measures on windows of ``n_notes`` (None: no piece that long)."""
        if n_notes not in self._references:
            try:
                stats = reference_stats(self.reference, n_notes, self.copy_index)
            except ValueError:
                stats = None
            self._references[n_notes] = stats
        return self._references[n_notes]

    def generate(self) -> GenerationResult | None:
        """Generate with the current settings and show the result; None after an error."""
        self.generate_button.disabled = True
        self.status.value = "generating…"
        try:
            return self._generate()
        except Exception as exc:  # shown in the UI, never a traceback
            known = isinstance(exc, ValueError | RuntimeError)
            self.output.outputs = ()
            self._error(str(exc) if known else f"{type(exc).__name__}: {exc}")
            return None
        finally:
            self.generate_button.disabled = False

    def _generate(self) -> GenerationResult:
        key, s, t0 = self.primer.value, self.settings, time.perf_counter()
        if key not in self.primers:
            raise ValueError("choose a primer first")
        options = dict(s, cpu_threads=self.cpu_threads, copy_index=self.copy_index)
        with warnings.catch_warnings(record=True) as caught:  # shown below, once
            warnings.simplefilter("always")
            result = generate(self.model, self.normalizer, self.primers[key], **options)
            t1 = time.perf_counter()
            players = [play(t, self.sample_rate) for t in result.notes]
        t2 = time.perf_counter()
        show = self.show_score.value
        scores = [self._score(result, i) if show else [] for i in range(len(result))]
        t3 = time.perf_counter()
        top_p = "off" if s["top_p"] is None else f"{s['top_p']:.2f}"
        sizes = f"{s['n_notes']} notes × {s['n_variations']} variation(s)"
        head = f"<b>{html.escape(key)}</b>: {sizes}, temperature {s['temperature']:.2f}, "
        head += f"top-k {s['top_k'] or 'off'}, top-p {top_p}, seed {result.seed}"
        notices = [*result.messages, *(str(w.message) for w in caught)]
        if s["temperature"] == 0 and s["n_variations"] > 1:
            notices.insert(0, _SAME)
        head += "".join(f"<br><i>{html.escape(m)}</i>" for m in dict.fromkeys(notices))
        rolls = {"image/png": self._piano_rolls(result, key), "text/plain": "<piano rolls>"}
        outputs = [_html(head), _out(rolls)]
        stem = file_stem(key.removeprefix(UPLOAD_PREFIX))
        for i, (player, score) in enumerate(zip(players, scores, strict=True), 1):
            label, name = f"download variation {i} (.mid)", f"{stem}_seed{result.seed}_v{i}.mid"
            link = midi_download_link(result.midi_bytes(i - 1), name, label)
            audio = {"text/html": player._repr_html_(), "text/plain": f"<audio: variation {i}>"}
            outputs += [_html(f"<div><b>variation {i}</b> {link}</div>"), _out(audio), *score]
        reference = self._reference(s["n_notes"])
        table = stats_table(result.stats, reference)
        note = f" (no held-out piece has {s['n_notes']} notes: no real reference)"
        outputs.append(_html(f"<b>measures</b> of the continuation{'' if reference else note}"))
        outputs.append(_out({"text/html": table.to_html(), "text/plain": table.to_string()}))
        self.output.outputs = ()  # an equal value would not be sent: the page would not change
        self.output.outputs = tuple(outputs)
        self.last_result, self.last_audio, self.last_error = result, players, None
        self.last_timings = {"generate": t1 - t0, "audio": t2 - t1, "scores": t3 - t2}
        self.last_timings["total"] = time.perf_counter() - t0
        took = f"generation {t1 - t0:.2f} s, audio {t2 - t1:.2f} s, {audio_backend()} synthesizer"
        self.status.value = f"done in {self.last_timings['total']:.2f} s ({took})"
        return result

    def _score(self, result: GenerationResult, i: int) -> list[dict]:
        """Variation ``i``'s score (eighth-note grid, at most 24 measures), or why there is none."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                svg = score_svg(
                    result.notes[i], split_at=result.split_at, grid=0.5, max_measures=24
                )
            except Exception as exc:  # a score is a view: the result stays
                why = html.escape(f"{type(exc).__name__}: {exc}")
                return [_html(f"<i>variation {i + 1}: no score ({why})</i>")]
        cut = [str(w.message) for w in caught if "max_measures" in str(w.message)]
        image = _out({"image/svg+xml": svg, "text/plain": f"<score: variation {i + 1}>"})
        return [image, *(_html(f"<i>variation {i + 1}: {html.escape(m)}</i>") for m in cut)]

    def _piano_rolls(self, result: GenerationResult, title: str) -> str:
        """Base64 PNG of one piano roll per variation (no pyplot: nothing leaks out)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 2.4 * len(result) + 0.7))
        axes = fig.subplots(len(result), 1, sharex=True, squeeze=False)[:, 0]
        for i, (ax, notes) in enumerate(zip(axes, result.notes, strict=True), 1):
            plot_piano_roll(notes, ax=ax, split_at=result.split_at, title=f"{title}: variation {i}")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=72)
        return base64.b64encode(buf.getvalue()).decode("ascii")
