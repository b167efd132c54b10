export * from './tensor.js';
export * from './scope.js';
export * from './autograd.js';
export * from './ops/elementwise.js';
export * from './ops/layout.js';
export * from './ops/reduce.js';
export * from './ops/index.js';
export * from './optim.js';
