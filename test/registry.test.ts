// The kernel registry's source handling (src/gpu/registry.ts): `enable f16;` only for code that names
// f16 outside comments (checked by compiling on a device without shader-f16), comment stripping, and
// `//#include "file.wgsl"` (nesting, cycles, malformed lines; the matmul kernels' shared epilogue).
import { describe, expect, it } from 'vitest';
import { requestAdapter } from '../src/gpu/device.js';
import { expandIncludes, kernelSource, preprocess, stripComments, withF16Enable } from '../src/gpu/registry.js';
import { ArdError } from '../src/util/errors.js';

describe('enable f16 from code only', () => {
  it('strips line and nested block comments, keeping line breaks', () => {
    const src = 'a // f16 here\nb /* f16 /* nested f16 */ still\n comment */ c\n// last';
    const bare = stripComments(src);
    expect(bare).toBe('a \nb \n c\n');
    expect(bare.split('\n').length).toBe(src.split('\n').length);
  });

  it('adds `enable f16;` for an f16 type in code, not for the word in a comment, an identifier or an enabled module', () => {
    expect(withF16Enable('var<private> x: f16;')).toBe('enable f16;\nvar<private> x: f16;');
    expect(withF16Enable('var<private> x: vec4<f16>;')).toMatch(/^enable f16;\n/);
    for (const code of ['// reads f16 when the cache is f16\nvar<private> x: f32;', '/* f16 */ var<private> x: f32;', 'var<private> my_f16x: f32;', 'enable f16;\nvar<private> x: f16;']) {
      expect(withF16Enable(code), code).toBe(code);
    }
  });

  it('a kernel whose comments name f16 compiles on a device without shader-f16 (the old rule broke it)', async () => {
    const adapter = await requestAdapter();
    const device = await adapter.requestDevice(); // no features: no shader-f16
    try {
      const src = '// an f32 kernel whose comment mentions f16\n@group(0) @binding(0) var<storage, read_write> X: array<f32>;\n@compute @workgroup_size(1) fn main() { X[0] = 1.0; }';
      const errors = async (code: string) => (await device.createShaderModule({ code }).getCompilationInfo()).messages.filter((m) => m.type === 'error').length;
      expect(await errors(withF16Enable(src))).toBe(0);
      // what the registry did before: enable f16 on any mention, which such a device rejects
      expect(await errors(`enable f16;\n${src}`)).toBeGreaterThan(0);
    } finally {
      device.destroy();
    }
  });
});

describe('//#include', () => {
  const files: Record<string, string> = {
    'a.wgsl': 'A1\n//#include "b.wgsl"\nA2\n',
    'b.wgsl': 'B1 ${X}\n//#if Y\nBY\n//#endif\n',
    'self.wgsl': '//#include "loop.wgsl"\n',
    'loop.wgsl': '  //#include "self.wgsl"\n',
  };
  const read = (n: string) => {
    const f = files[n];
    if (f === undefined) throw new ArdError(`${n}: not found`);
    return f;
  };

  it('expands nested includes in place; defines and //#if apply to the included text', () => {
    const src = expandIncludes('top\n//#include "a.wgsl"\nend', read, 'k');
    expect(src).toBe('top\nA1\nB1 ${X}\n//#if Y\nBY\n//#endif\nA2\nend');
    expect(preprocess(src, { X: 7, Y: false }, 'k')).toBe('top\nA1\nB1 7\nA2\nend');
  });

  it('a cycle or a malformed include line is an error naming the kernel', () => {
    expect(() => expandIncludes('//#include "self.wgsl"', read, 'k.main')).toThrow(/^kernel k\.main: include cycle self\.wgsl → loop\.wgsl → self\.wgsl$/);
    expect(() => expandIncludes('//#include other.wgsl', read, 'k')).toThrow(/^kernel k: malformed include '\/\/#include other\.wgsl'/);
    expect(() => expandIncludes('//#include "missing.wgsl"', read, 'k')).toThrow(/missing\.wgsl: not found/);
  });

  it('the three matmul kernels take their epilogue from kernels/matmul_epilogue.wgsl', () => {
    for (const family of ['matmul', 'matmul_tiled', 'matmul_gemv']) {
      const src = kernelSource(family);
      expect(src, family).not.toMatch(/^\s*\/\/#include/m);
      expect(src.match(/^fn store4\(/gm), family).toHaveLength(1);
      expect(src.match(/^fn erfc_\(/gm), family).toHaveLength(1);
    }
  });
});
