// Model-backed wiring of the AR&D stages: the AudioLLM as the describer (it captions a feature's
// most representative clips), and "explain" on one WAV (residuals at a layer → named features).
import { readAudio } from '../audio/decode.js';
import type { AudioLLM } from '../model/audiollm.js';
import { ask, askBatch } from '../model/chat.js';
import { concat, tidy } from '../tensor/index.js';
import type { Tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import type { Describer } from './describe.js';
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

/** Mono 16 kHz samples of an audio file (WAV, FLAC, Ogg Vorbis, Ogg Opus or MP3). */
export async function wavSamples(file: string): Promise<Float32Array> {
  return (await readAudio(file)).samples;
}
