// Preload for `npm run bench:e2e` and `bench:startup` with BENCH_CPU_PROF (Node 20 refuses
// --cpu-prof in NODE_OPTIONS, and the gateway is started by `mcpgw up`): NODE_OPTIONS="--import <this file>" and
// BENCH_PROFILE_DIR=<dir>. Samples the main thread from start to exit and writes
// <dir>/CPU.<pid>.cpuprofile (inspector sessions on the own thread answer synchronously).
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';

const dir = process.env.BENCH_PROFILE_DIR;
if (dir && isMainThread) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 1000 });
  session.post('Profiler.start');
  process.on('exit', () => {
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(join(dir, `CPU.${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
