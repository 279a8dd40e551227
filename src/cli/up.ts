/** `mcpgw up`: Docker when an engine answers (and --native is not given), else native. */
import { mcpgwHome } from '../config/keys.js';
import { defaultImage, dockerEngineAnswers } from './docker.js';
import { clientSnippets, upNative, upWithDocker, type UpResult } from './lifecycle.js';
import { colorEnabled, paint } from './tty.js';

export interface UpOptions {
  native?: boolean;
  init?: boolean;
  image?: string;
  json?: boolean;
}

export function upSummary(r: UpResult): string {
  const p = paint(colorEnabled(process.stdout));
  const where = r.mode === 'docker' ? `container ${r.container ?? ''}` : `pid ${r.pid ?? '?'}`;
  const lines = [
    r.alreadyRunning
      ? `mcpgw is already running at ${r.url} (${where})`
      : `${p.green('✓')} mcpgw is up at ${r.url} (${where}, front: ${r.front})`,
    `Logs: ${r.logFile}`,
    ...r.notices.map((n) => `${p.yellow('!')} ${n}`),
  ];
  if (r.init)
    lines.push(
      `Agent API key (shown once): ${r.init.apiKey}`,
      `Admin key (shown once): ${r.init.adminKey}`,
      '  Admin commands read it from MCPGW_ADMIN_KEY; whoever can read that can approve.',
    );
  lines.push(
    '',
    'MCP client configuration:',
    clientSnippets(r.url, r.init?.apiKey ?? null),
    '',
    r.mode === 'native'
      ? 'Note: in native mode an agent running as your OS user can read files you can read; keep the admin key out of its reach.'
      : `Stop it with: mcpgw down`,
  );
  return `${lines.join('\n')}\n`;
}

export async function upCommand(o: UpOptions, version: string): Promise<void> {
  const home = mcpgwHome();
  const quiet = o.json === true;
  let r: UpResult;
  if (!o.native && dockerEngineAnswers()) {
    r = await upWithDocker({ home, init: o.init === true, image: o.image ?? defaultImage(version), quiet });
  } else {
    if (!o.native && !quiet)
      process.stderr.write(
        'No Docker engine answers: running natively (embedded database, built-in or local Envoy front).\n',
      );
    r = await upNative({ home, init: o.init === true, quiet });
  }
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({
        url: r.url,
        pid: r.pid,
        mode: r.mode,
        ...(r.container !== undefined ? { container: r.container } : {}),
        front: r.front,
        alreadyRunning: r.alreadyRunning,
        notices: r.notices,
        ...(r.init ? { apiKey: r.init.apiKey, adminKey: r.init.adminKey } : {}),
      })}\n`,
    );
    return;
  }
  process.stdout.write(upSummary(r));
}
