// The virtual module web/build-engine.mjs generates: every kernels/*.wgsl by file name.
declare module 'ardgpu:kernels' {
  export const KERNELS: Record<string, string>;
}
