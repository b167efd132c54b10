// The kernel registry: reads kernels/<family>.wgsl once, specialises it (a tiny preprocessor plus
// WGSL override constants) and caches one compute pipeline per (family, entry, defines, constants)
// on each device.
//
// Preprocessor, applied before compilation:
//   ${NAME}            replaced by defines[NAME] (missing → error naming the kernel)
//   //#if NAME  / //#else / //#endif   keep a block when defines[NAME] is truthy (nesting allowed)
//   //#include "file.wgsl"            the text of kernels/file.wgsl in place of the line (before the
//                                      rest: an included file may use ${NAME} and //#if; nesting allowed)
// `enable f16;` is prepended when the code (comments aside) names f16, i.e. only in f16 variants.
// Binding convention (every kernel header restates it): @group(0) @binding(0) is the uniform
// parameter block when the kernel has one, then the storage buffers in the order the op passes them.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArdError } from '../util/errors.js';

export type Defines = Record<string, string | number | boolean>;

export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj) && fs.existsSync(path.join(dir, 'kernels'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new ArdError('cannot find the ardgpu package root (kernels/ folder)');
    dir = up;
  }
}

const sourceCache = new Map<string, string>();
/** kernels/<family>.wgsl with its includes expanded. */
export function kernelSource(family: string): string {
  let src = sourceCache.get(family);
  if (src === undefined) {
    src = expandIncludes(readKernelFile(`${family}.wgsl`, `kernel family '${family}' not found`), readKernelFile, family);
    sourceCache.set(family, src);
  }
  return src;
}

function readKernelFile(name: string, missing = 'included file not found'): string {
  const file = path.join(packageRoot(), 'kernels', name);
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    throw new ArdError(`${file}: ${missing}`);
  }
}

/**
 * Replaces each `//#include "name.wgsl"` line by the text `read(name)` gives (expanded likewise); a file
 * including itself, directly or not, is an error naming the chain.
 */
export function expandIncludes(src: string, read: (name: string) => string, label: string, chain: string[] = []): string {
  return src
    .split('\n')
    .map((line) => {
      const m = line.trim().match(/^\/\/#include\s+"([\w.-]+\.wgsl)"$/);
      if (!m) {
        if (/^\/\/#include\b/.test(line.trim())) throw new ArdError(`kernel ${label}: malformed include '${line.trim()}' (want //#include "name.wgsl")`);
        return line;
      }
      const name = m[1]!;
      if (chain.includes(name)) throw new ArdError(`kernel ${label}: include cycle ${[...chain, name].join(' → ')}`);
      return expandIncludes(read(name).replace(/\n$/, ''), read, label, [...chain, name]);
    })
    .join('\n');
}

/** WGSL without its comments (line comments and nested block comments), line breaks kept. */
export function stripComments(src: string): string {
  let out = '';
  let depth = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    const two = src.slice(i, i + 2);
    if (depth === 0 && two === '//') {
      while (i < src.length && src[i] !== '\n') i++;
      if (i < src.length) out += '\n';
    } else if (two === '/*') {
      depth++;
      i++;
    } else if (depth > 0 && two === '*/') {
      depth--;
      i++;
    } else if (depth > 0) {
      if (c === '\n') out += c;
    } else out += c;
  }
  return out;
}

/** The code with `enable f16;` first when its code, not its comments, names f16 and does not enable it. */
export function withF16Enable(code: string): string {
  const bare = stripComments(code);
  return /\bf16\b/.test(bare) && !/\benable\s+f16\s*;/.test(bare) ? `enable f16;\n${code}` : code;
}

export function preprocess(src: string, defines: Defines, label: string): string {
  const out: string[] = [];
  const stack: { keep: boolean; parentKeep: boolean }[] = [];
  let keep = true;
  for (const line of src.split('\n')) {
    const t = line.trim();
    let m: RegExpMatchArray | null;
    if ((m = t.match(/^\/\/#if\s+(!?)(\w+)\s*$/))) {
      const v = Boolean(defines[m[2]!]) !== (m[1] === '!');
      stack.push({ keep: v, parentKeep: keep });
      keep = keep && v;
      continue;
    }
    if (t === '//#else') {
      const top = stack[stack.length - 1];
      if (!top) throw new ArdError(`kernel ${label}: //#else without //#if`);
      top.keep = !top.keep;
      keep = top.parentKeep && top.keep;
      continue;
    }
    if (t === '//#endif') {
      const top = stack.pop();
      if (!top) throw new ArdError(`kernel ${label}: //#endif without //#if`);
      keep = top.parentKeep;
      continue;
    }
    if (keep) out.push(line);
  }
  if (stack.length) throw new ArdError(`kernel ${label}: unterminated //#if`);
  return out.join('\n').replace(/\$\{(\w+)\}/g, (_, name: string) => {
    const v = defines[name];
    if (v === undefined) throw new ArdError(`kernel ${label}: define \${${name}} not given`);
    return String(v);
  });
}

export interface KernelSpec {
  family: string;
  entry?: string; // default 'main'
  defines?: Defines;
  constants?: Record<string, number>;
}

export function kernelLabel(spec: KernelSpec): string {
  return `${spec.family}.${spec.entry ?? 'main'}`;
}

export class KernelRegistry {
  private pipelines = new Map<string, GPUComputePipeline>();
  private modules = new Map<string, GPUShaderModule>();
  /** Pending compile/validation checks, awaited at the next sync point. */
  readonly pendingChecks: Promise<void>[] = [];
  compiled = 0;

  constructor(private device: GPUDevice, private f16: boolean) {}

  pipeline(spec: KernelSpec): GPUComputePipeline {
    const defines: Defines = { F16: this.f16, ...(spec.defines ?? {}) };
    const key = `${spec.family}|${spec.entry ?? 'main'}|${JSON.stringify(defines)}|${JSON.stringify(spec.constants ?? {})}`;
    let p = this.pipelines.get(key);
    if (p) return p;
    const label = kernelLabel(spec);
    const modKey = `${spec.family}|${JSON.stringify(defines)}`;
    let module = this.modules.get(modKey);
    this.device.pushErrorScope('validation');
    if (!module) {
      const code = withF16Enable(preprocess(kernelSource(spec.family), defines, label));
      module = this.device.createShaderModule({ code, label });
      this.modules.set(modKey, module);
    }
    p = this.device.createComputePipeline({
      label,
      layout: 'auto',
      compute: { module, entryPoint: spec.entry ?? 'main', constants: spec.constants },
    });
    this.compiled++;
    const check = this.device.popErrorScope().then((err) => {
      if (err) throw new ArdError(`kernel ${label} failed to compile: ${err.message.split('\n').slice(0, 6).join(' | ')}`);
    });
    check.catch(() => {}); // reported when awaited at the next sync point
    this.pendingChecks.push(check);
    this.pipelines.set(key, p);
    return p;
  }
}
