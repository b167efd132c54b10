// Model-backed wiring of the AR&D stages: the AudioLLM as the describer (it captions a feature's
// most representative clips), and "explain" on one WAV (residuals at a layer → named features).
import type { ClipReader } from '../audio/stream.js';
import type { AudioLLM } from '../model/audiollm.js';
import { ask, askBatch } from '../model/chat.js';
import { concat, tidy } from '../tensor/index.js';
import type { Tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import type { Describer } from './describe.js';
import { ExplainStream, type ExplainOptions, type ExplanationSummary } from './explain.js';
import { FeatureActivationStream } from './retrieve.js';
import type { SparseEncoder } from '../sae/types.js';
import { DEFAULT_CAPTURE_PROMPT, windowResiduals } from './capture.js';

export const CAPTION_PROMPT = 'Describe the sound.';

/** Captions clips with the AudioLLM itself (greedy, so names are reproducible). */
export function modelDescriber(model: AudioLLM, opts: { prompt?: string; maxNewTokens?: number } = {}): Describer {
  const prompt = opts.prompt ?? CAPTION_PROMPT;
  const maxNewTokens = opts.maxNewTokens ?? 24;
  return {
    id: JSON.stringify({ model: model.source, prompt, maxNewTokens }),
    caption: async (clip) => (await ask(model, clip.file, prompt, { maxNewTokens })).trim(),
    // one batch of greedy decoding: each caption is ask()'s for that clip (generateBatch)
    captionMany: async (clips) => (await askBatch(model, clips.map((c) => ({ audio: c.file, question: prompt })), { maxNewTokens })).map((r) => r.text.trim()),
  };
}

/**
 * The residual stream [audio tokens, d] after decoder layer `layer` for one clip, with the same
 * prompt capture uses (so SAE features mean the same thing). A clip longer than the model's audio
 * window is taken window by window, as capture takes it, and the windows' rows are concatenated:
 * row r lies at r × model.frameSeconds of the clip. The caller disposes the tensor.
 */
export function clipResiduals(model: AudioLLM, samples: Float32Array, layer: number, prompt = DEFAULT_CAPTURE_PROMPT): Tensor {
  const windows = model.windows(samples.length);
  if (!windows.length) throw new ArdError(`explain: a clip of ${samples.length} samples is too short to give an audio token`);
  const parts: Tensor[] = [];
  try {
    for (const w of windows) {
      const got = windowResiduals(model, samples.subarray(w.from, w.to), [layer], { prompt, lastLayer: layer });
      const t = got.get(layer);
      if (!t) throw new ArdError(`explain: the layer ${layer} hook did not run`);
      parts.push(t);
    }
    return parts.length === 1 ? parts.pop()! : tidy(() => concat(parts, 0));
  } finally {
    for (const p of parts) p.dispose();
  }
}

export interface ExplainClipOptions {
  model: AudioLLM;
  sae: SparseEncoder;
  /** The clip: its length and its windows' samples, read in order (openClip for a file). */
  clip: Pick<ClipReader, 'length' | 'window'>;
  layer: number;
  /** The capture prompt (default DEFAULT_CAPTURE_PROMPT). */
  prompt?: string;
  features: ExplainOptions['features'];
  threshold?: number;
  mergeGap?: number;
  width?: number;
  /** Only the duration and the terminal timeline: the segments are not kept (ExplainStream keepSegments). */
  timelineOnly?: boolean;
}

/**
 * explain(clipResiduals(...)) for a clip read a window at a time: each window's residual rows go
 * through the SAE as they come (FeatureActivationStream, whose blocks encode as all the rows at
 * once would) into an ExplainStream, so host and GPU memory stay flat in the clip's length. The
 * result is explain()'s less the per-row activations (with timelineOnly, its duration and timeline).
 */
export async function explainClip(o: ExplainClipOptions & { timelineOnly: true }): Promise<{ duration: number; timeline: string }>;
export async function explainClip(o: ExplainClipOptions): Promise<ExplanationSummary>;
export async function explainClip(o: ExplainClipOptions): Promise<ExplanationSummary | { duration: number; timeline: string }> {
  const { model, layer } = o;
  const windows = model.windows(o.clip.length);
  if (!windows.length) throw new ArdError(`explain: a clip of ${o.clip.length} samples is too short to give an audio token`);
  const d = model.config.text_config.hidden_size;
  const ids = o.features.map((f) => f.id);
  const rows = windows.reduce((n, w) => n + w.tokens, 0);
  const out = new ExplainStream({ rows, frameSeconds: model.frameSeconds, features: o.features, threshold: o.threshold, mergeGap: o.mergeGap, width: o.width, keepSegments: !o.timelineOnly });
  const acts = new FeatureActivationStream(model.engine, o.sae, ids, d);
  try {
    for (const w of windows) {
      const got = windowResiduals(model, await o.clip.window(w.from, w.to), [layer], { prompt: o.prompt ?? DEFAULT_CAPTURE_PROMPT, lastLayer: layer });
      const t = got.get(layer);
      if (!t) throw new ArdError(`explain: the layer ${layer} hook did not run`);
      if (t.shape[0] !== w.tokens) {
        t.dispose();
        throw new ArdError(`explain: window ${w.index} gave ${t.shape[0]} rows, not ${w.tokens}`);
      }
      const a = await acts.push(t);
      if (a) out.push(a);
    }
    out.push(await acts.end());
  } finally {
    acts.dispose();
  }
  return o.timelineOnly ? out.timeline() : out.finish();
}
