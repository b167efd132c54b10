// Model-backed wiring of the AR&D stages: the AudioLLM as the describer (it captions a feature's
// most representative clips), and "explain" on one WAV (residuals at a layer → named features).
import { readAudio } from '../audio/decode.js';
import type { AudioLLM } from '../model/audiollm.js';
import { ask, buildChatPrompt } from '../model/chat.js';
import { contiguous, keep, slice } from '../tensor/index.js';
import type { Tensor } from '../tensor/tensor.js';
import { ArdError } from '../util/errors.js';
import type { Describer } from './describe.js';
import { DEFAULT_CAPTURE_PROMPT } from './capture.js';

export const CAPTION_PROMPT = 'Describe the sound.';

/** Captions clips with the AudioLLM itself (greedy, so names are reproducible). */
export function modelDescriber(model: AudioLLM, opts: { prompt?: string; maxNewTokens?: number } = {}): Describer {
  const prompt = opts.prompt ?? CAPTION_PROMPT;
  const maxNewTokens = opts.maxNewTokens ?? 24;
  return {
    id: JSON.stringify({ model: model.source, prompt, maxNewTokens }),
    caption: async (clip) => (await ask(model, clip.file, prompt, { maxNewTokens })).trim(),
  };
}

/**
 * The residual stream [audio tokens, d] after decoder layer `layer` for one clip, with the same
 * prompt capture uses (so SAE features mean the same thing). The caller disposes the tensor.
 */
export function clipResiduals(model: AudioLLM, samples: Float32Array, layer: number, prompt = DEFAULT_CAPTURE_PROMPT): Tensor {
  if (!model.tokenizer) throw new ArdError(`${model.source}: no tokenizer.json`);
  const n = model.audioTokens(samples.length); // one audio block per clip, as ask() and capture build it
  const ids = buildChatPrompt(model.tokenizer, [n], prompt, { audioTokenIndex: model.audioTokenIndex });
  const first = ids.indexOf(model.audioTokenIndex);
  let out: Tensor | null = null;
  const h = model.hooks.add({
    layer,
    fn: (resid, ctx) => {
      if (ctx.step === 0) out = keep(contiguous(slice(resid, 0, first - ctx.start, first - ctx.start + n)));
    },
  });
  try {
    const audio = model.encodeAudio(samples);
    try {
      model.forward(ids, audio, { logits: 'none', lastLayer: layer });
    } finally {
      audio.dispose();
    }
  } finally {
    h.remove();
  }
  if (!out) throw new ArdError(`explain: the layer ${layer} hook did not run`);
  return out;
}

/** Mono 16 kHz samples of an audio file (WAV, FLAC, Ogg Vorbis, Ogg Opus or MP3). */
export async function wavSamples(file: string): Promise<Float32Array> {
  return (await readAudio(file)).samples;
}
