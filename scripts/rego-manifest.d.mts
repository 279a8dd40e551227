export declare const ENTRYPOINTS: string[];
export declare const CAPABILITIES_FILE: string;
export declare const WASM_FILE: string;
export declare const MANIFEST_FILE: string;
export declare function regoSources(regoDir: string): string[];
export declare function sha256Hex(bytes: Uint8Array | string): string;
export declare function sourcesSha256(regoDir: string): string;
/** The bytes of one member (leading `/` ignored) of a gzipped tar archive, or null. */
export declare function tarMember(gz: Uint8Array, name: string): Buffer | null;

/** The shape of `rego/policy.wasm.json`. */
export interface RegoManifest {
  entrypoints: string[];
  sources: string[];
  sourcesSha256: string;
  opaVersion: string;
  wasmSha256: string;
}
