export interface SourceBuild {
  /** `<dir>/cli/main.js` is the build of `src/cli/main.ts`. */
  dir: string;
  key: string;
  /** False when a build of these exact sources already existed. */
  built: boolean;
}

export interface SourceBuildOptions {
  /** Default `<root>/src`. */
  srcDir?: string;
  /** Default `<root>/node_modules/.cache/mcpgw`. */
  cacheDir?: string;
}

/** The source files of a build, relative to `srcDir`, sorted, '/'-separated. */
export declare function sourceFiles(srcDir: string): string[];
export declare function sourceKey(input: {
  srcDir: string;
  sources: { rel: string; bytes: Uint8Array }[];
  esbuildVersion: string;
  compilerOptions: Record<string, unknown>;
}): string;
export declare function sourceBuild(root: string, opts?: SourceBuildOptions): Promise<SourceBuild>;
