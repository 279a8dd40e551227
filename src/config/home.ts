/** Where a native installation keeps its files, all under MCPGW_HOME (default ~/.mcpgw). */
import { join } from 'node:path';
import { keysDir, mcpgwHome } from './keys.js';

export interface HomePaths {
  home: string;
  keys: string;
  config: string;
  policy: string;
  logs: string;
  log: string;
  run: string;
  pid: string;
  ready: string;
}

export function homePaths(home: string = mcpgwHome()): HomePaths {
  const run = join(home, 'run');
  const logs = join(home, 'logs');
  return {
    home,
    keys: keysDir(home),
    config: join(home, 'config.yaml'),
    policy: join(home, 'mcp-security.yaml'),
    logs,
    log: join(logs, 'mcpgw.log'),
    run,
    pid: join(run, 'mcpgw.pid'),
    ready: join(run, 'ready.json'),
  };
}
