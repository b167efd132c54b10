// bench/gpu-check.sh (run half, from this checkout) on the CPU adapter with tiny sizes, so the script
// and bench/gpu-check.ts cannot rot: it refuses a software adapter unless --allow-software, and with
// it prints `ardgpu info --json` and then one JSON with every measurement the GPU run reports.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ownTimeout } from './helpers.js';

const SCRIPT = path.join(import.meta.dirname, '..', 'bench', 'gpu-check.sh');
const TINY = ['--m', '1,4,33', '--nk', '64', '--attn', '2,50,16', '--decode', '4,2,40,16', '--sae', '32,256,4,64', '--demo-size', '0', '--seconds', '0.02'];

function run(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', [SCRIPT, ...args], { encoding: 'utf8', env: { ...process.env, GPU_CHECK_TIMEOUT: '300' }, maxBuffer: 16 << 20 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The JSON documents printed one after the other (info, then the check). */
function documents(out: string): Record<string, any>[] {
  const docs: Record<string, any>[] = [];
  let depth = 0;
  let start = -1;
  for (let i = 0; i < out.length; i++) {
    if (out[i] === '{') {
      if (depth++ === 0) start = i;
    } else if (out[i] === '}' && --depth === 0) docs.push(JSON.parse(out.slice(start, i + 1)));
  }
  return docs;
}

describe('bench/gpu-check.sh', () => {
  it('refuses a software adapter without --allow-software', () => {
    const r = run(TINY);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/no NVIDIA Vulkan driver found|software rasteriser on the CPU, not a GPU \(pass --allow-software/);
  }, ownTimeout(120_000));

  it('measures everything at tiny sizes with --allow-software', () => {
    const r = run(['--allow-software', ...TINY]);
    expect(r.code, r.stderr).toBe(0);
    const [info, check] = documents(r.stdout);
    expect(info!.profile.kind).toMatch(/^(cpu|gpu)$/);
    expect(info!.profile.variants.matmul).toBeTruthy();
    expect(check!.isSoftware).toBe(true);
    expect(check!.peak.fmaGflops).toBeGreaterThan(0);
    expect(check!.peak.copyGBs).toBeGreaterThan(0);
    const dtypes = info!.f16 ? ['f32', 'f16'] : ['f32'];
    expect(check!.matmul.map((m: any) => `${m.dtype} ${m.M}`)).toEqual(dtypes.flatMap((d) => [1, 4, 33].map((M) => `${d} ${M}`)));
    for (const m of check!.matmul) expect(m.gflops).toBeGreaterThan(0);
    expect(check!.attention).toMatchObject({ heads: 2, frames: 50, headDim: 16 });
    expect(check!.attention.ms).toBeGreaterThan(0);
    expect(check!.attention.variant).toBe(info!.profile.nn.attention);
    expect(check!.attention.flashMs).toBeGreaterThan(0);
    expect(check!.attention.chunkedMs).toBeGreaterThan(0);
    if (info!.f16) expect(check!.attention.flashF16KvMs).toBeGreaterThan(0);
    else expect(check!.attention.flashF16KvMs).toBeNull();
    // a decode step: the profile's choice (the CPU profile: chunked; the GPU profile: split-K or flash), each kernel timed
    expect(check!.attentionDecode).toMatchObject({ heads: 4, kvHeads: 2, keys: 40, headDim: 16 });
    expect(check!.attentionDecode.variant).toBe(info!.profile.nn.attention === 'chunked' ? 'chunked' : check!.attentionDecode.splits > 1 ? 'split' : 'flash');
    for (const f of ['ms', 'flashMs', 'splitMs', 'chunkedMs']) expect(check!.attentionDecode[f], f).toBeGreaterThan(0);
    if (info!.f16) expect(check!.attentionDecode.splitF16KvMs).toBeGreaterThan(0);
    else expect(check!.attentionDecode.splitF16KvMs).toBeNull();
    expect(check!.sae).toMatchObject({ d: 32, m: 256, k: 4, batch: 64 });
    expect(check!.sae.tokensPerS).toBeGreaterThan(0);
    expect(check!.demo).toBeNull();
  }, ownTimeout(300_000));

  it('rejects a malformed option with one line', () => {
    const r = run(['--allow-software', '--sae', '1,2']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/gpu-check: --sae wants 4 comma-separated integers, got '1,2'/);
  }, ownTimeout(120_000));
});
