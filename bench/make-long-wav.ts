// Writes a long pink-noise WAV (seeded, 16-bit PCM) for measuring memory on long clips, a block at a
// time so the writer itself needs no memory for the clip.
//
//   npx tsx bench/make-long-wav.ts OUT.wav --minutes 10 [--rate 16000] [--channels 1] [--seed 1]
import * as fs from 'node:fs';

const args = process.argv.slice(2);
const out = args.find((a) => !a.startsWith('--'));
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
if (!out) {
  console.error('usage: npx tsx bench/make-long-wav.ts OUT.wav --minutes M [--rate 16000] [--channels 1] [--seed 1]');
  process.exit(2);
}
const minutes = flag('minutes', 1);
const rate = flag('rate', 16000);
const channels = flag('channels', 1);
let seed = flag('seed', 1) >>> 0 || 1;
const frames = Math.round(minutes * 60 * rate);
const dataBytes = frames * channels * 2;

const head = Buffer.alloc(44);
head.write('RIFF', 0, 'ascii');
head.writeUInt32LE(36 + dataBytes, 4);
head.write('WAVE', 8, 'ascii');
head.write('fmt ', 12, 'ascii');
head.writeUInt32LE(16, 16);
head.writeUInt16LE(1, 20);
head.writeUInt16LE(channels, 22);
head.writeUInt32LE(rate, 24);
head.writeUInt32LE(rate * channels * 2, 28);
head.writeUInt16LE(channels * 2, 32);
head.writeUInt16LE(16, 34);
head.write('data', 36, 'ascii');
head.writeUInt32LE(dataBytes, 40);

const fd = fs.openSync(`${out}.tmp`, 'w');
fs.writeSync(fd, head);
// Paul Kellet's economical pink filter on seeded white noise, one filter per channel.
const state = Array.from({ length: channels }, () => [0, 0, 0]);
const rnd = () => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 2 ** 31 - 1;
};
const block = 1 << 16;
const buf = Buffer.alloc(block * channels * 2);
for (let f0 = 0; f0 < frames; f0 += block) {
  const n = Math.min(block, frames - f0);
  let p = 0;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < channels; c++) {
      const s = state[c]!;
      const w = rnd();
      s[0] = 0.99765 * s[0]! + w * 0.099046;
      s[1] = 0.963 * s[1]! + w * 0.2965164;
      s[2] = 0.57 * s[2]! + w * 1.0526913;
      const v = (s[0]! + s[1]! + s[2]! + w * 0.1848) * 0.08;
      buf.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(v * 32767))), p);
      p += 2;
    }
  }
  fs.writeSync(fd, buf, 0, p);
}
fs.closeSync(fd);
fs.renameSync(`${out}.tmp`, out);
console.error(`${out}: ${minutes} min of pink noise, ${rate} Hz, ${channels} channel(s), ${(44 + dataBytes) / 1e6} MB`);
