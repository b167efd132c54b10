// Runs the README's library example exactly as printed there: the ```ts block after the
// <!-- library-example --> marker, with 'ardgpu' resolved to this checkout's sources.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, expect, it, vi } from 'vitest';

const root = path.join(import.meta.dirname, '..');
const gen = path.join(import.meta.dirname, 'readme-example.gen.ts');

afterAll(() => fs.rmSync(gen, { force: true }));

it('the README library example runs and prints relu(x·W) from a caller-owned buffer', async () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const m = readme.match(/<!-- library-example -->\s*```ts\n([\s\S]*?)```/);
  expect(m, 'README has a ```ts block after <!-- library-example -->').toBeTruthy();
  fs.writeFileSync(gen, m![1]!);
  const printed: unknown[][] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void printed.push(a));
  try {
    await import(gen);
  } finally {
    spy.mockRestore();
  }
  // x = [[1,2,3],[4,5,6],[-1,-2,-3],[0,1,0]], W = [[1,-1],[0,1],[1,0]] → relu(x·W)
  const x = [[1, 2, 3], [4, 5, 6], [-1, -2, -3], [0, 1, 0]];
  const W = [[1, -1], [0, 1], [1, 0]];
  const expected = x.flatMap((r) => [0, 1].map((j) => Math.max(0, r.reduce((a, v, i) => a + v * W[i]![j]!, 0))));
  const out = printed.find((a) => a[0] instanceof Float32Array)?.[0] as Float32Array | undefined;
  expect(out, 'the example logs the result array').toBeDefined();
  expect(Array.from(out!)).toEqual(expected);
  expect(printed.some((a) => String(a[0]).includes('still usable'))).toBe(true);
});
