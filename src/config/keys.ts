/**
 * Secret key files under `MCPGW_HOME/keys/` (session MAC, request MAC, audit HMAC, builtin vault
 * key, the local internal-JWT key ring).
 *
 * In native mode other local users may share the machine, so a key file readable by group or others
 * is refused rather than silently fixed: the key may already have leaked, and the operator should
 * know. Error messages name the path and the fix, never the content.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { link, mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

export class KeyFileError extends Error {
  readonly path: string;
  constructor(path: string, message: string) {
    super(message);
    this.name = 'KeyFileError';
    this.path = path;
  }
}

/** `MCPGW_HOME`, or `~/.mcpgw`; always absolute. */
export function mcpgwHome(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['MCPGW_HOME'];
  return resolve(fromEnv !== undefined && fromEnv !== '' ? fromEnv : join(homedir(), '.mcpgw'));
}

export function keysDir(home: string = mcpgwHome()): string {
  return join(home, 'keys');
}

// POSIX permission bits mean nothing on Windows, where ACLs apply instead.
const checkModes = process.platform !== 'win32';

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

function octal(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0');
}

/** Creates `dir` (0700) if needed; refuses an existing one that others can write to. */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  if (!st.isDirectory()) throw new KeyFileError(dir, `${dir} is not a directory`);
  // Others who can write here could swap a key file for one they know.
  if (checkModes && (st.mode & 0o022) !== 0) {
    throw new KeyFileError(
      dir,
      `${dir} is writable by group or others (mode ${octal(st.mode)}); run: chmod 700 ${dir}`,
    );
  }
}

/**
 * Reads a secret file, refusing it when group or others have any access. The mode is taken from the
 * open descriptor, so it is the mode of the bytes actually read (symlinks, as in Kubernetes secret
 * volumes, are followed).
 */
export async function readPrivateFile(path: string): Promise<Buffer> {
  const fh = await open(path, constants.O_RDONLY);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new KeyFileError(path, `${path} is not a regular file`);
    if (checkModes && (st.mode & 0o077) !== 0) {
      throw new KeyFileError(
        path,
        `${path} is readable or writable by group or others (mode ${octal(st.mode)}); run: chmod 600 ${path}`,
      );
    }
    return await fh.readFile();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, constants.O_RDONLY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // Not every platform can fsync a directory; the rename or link itself is still atomic.
  }
}

async function writeTemp(path: string, data: Uint8Array): Promise<string> {
  const tmp = join(dirname(path), `.${randomBytes(8).toString('hex')}.tmp`);
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  return tmp;
}

/**
 * Creates `path` (0600) with `data` unless it exists; returns false if it did. The content appears
 * all at once: it is written to a temporary file and hard-linked into place, which, unlike rename,
 * fails instead of replacing a file another process created meanwhile.
 */
export async function writePrivateFileNoClobber(path: string, data: Uint8Array): Promise<boolean> {
  const tmp = await writeTemp(path, data);
  try {
    await link(tmp, path);
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return false;
    // File systems without hard links: exclusive create is still no-clobber, just not atomic.
    if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'].includes(errnoCode(err) ?? '')) throw err;
    try {
      const fh = await open(path, 'wx', 0o600);
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (err2) {
      if (errnoCode(err2) === 'EEXIST') return false;
      throw err2;
    }
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  await syncDir(dirname(path));
  return true;
}

/** Replaces `path` (0600) atomically: readers see the old content or the new, never a mix. */
export async function replacePrivateFile(path: string, data: Uint8Array): Promise<void> {
  const tmp = await writeTemp(path, data);
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDir(dirname(path));
}

const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Returns the key stored in `dir/name` (raw bytes), creating it with `bytes` random bytes the first
 * time. `dir` is normally `keysDir()`.
 */
export async function loadOrCreateKey(dir: string, name: string, bytes = 32): Promise<Buffer> {
  if (!KEY_NAME.test(name)) throw new Error(`invalid key file name: ${JSON.stringify(name)}`);
  if (!Number.isInteger(bytes) || bytes < 16 || bytes > 4096) throw new Error('key length must be 16–4096 bytes');
  await ensurePrivateDir(dir);
  const path = join(dir, name);

  const readChecked = async (): Promise<Buffer> => {
    const key = await readPrivateFile(path);
    if (key.length !== bytes) {
      throw new KeyFileError(
        path,
        `${path} holds ${key.length} bytes, expected ${bytes}; it is not a key of this kind`,
      );
    }
    return key;
  };

  try {
    return await readChecked();
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  const key = randomBytes(bytes);
  if (await writePrivateFileNoClobber(path, key)) return key;
  // Another process created it first: use theirs, so every user of the key agrees.
  return readChecked();
}
