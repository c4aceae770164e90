// The few WebAssembly globals that src/hash.ts and src/io/direct.ts use: @types/node 20 declares none, and lib.dom
// is not for Node. Declared as narrowly as they are used.
declare namespace WebAssembly {
  interface Module {}
  interface Memory {
    readonly buffer: ArrayBuffer;
    grow(pages: number): number;
  }
  interface Instance {
    readonly exports: Record<string, unknown>;
  }
  const Memory: { new (descriptor: { initial: number; maximum?: number }): Memory };
  const Module: { new (bytes: Uint8Array): Module };
  const Instance: { new (module: Module, imports?: Record<string, Record<string, unknown>>): Instance };
  function compile(bytes: Uint8Array): Promise<Module>;
  function instantiate(module: Module, imports?: Record<string, Record<string, unknown>>): Promise<Instance>;
}
