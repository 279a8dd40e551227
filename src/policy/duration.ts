/**
 * The one duration grammar of the policy file (`timeout`, `per`, `ttl`, `consume_within`, `wait`):
 * a whole number and one unit, so every duration has exactly one spelling and one meaning.
 */
export const DURATION_PATTERN = /^\d+(s|m|h|d)$/;

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;

function isUnit(u: string): u is keyof typeof UNIT_SECONDS {
  return Object.hasOwn(UNIT_SECONDS, u);
}

/** Seconds in a duration, or null when the text is not in the grammar or too long to count exactly. */
export function parseDuration(text: string): number | null {
  const unit = DURATION_PATTERN.exec(text)?.[1];
  if (unit === undefined || !isUnit(unit)) return null;
  const seconds = Number(text.slice(0, -1)) * UNIT_SECONDS[unit];
  return Number.isSafeInteger(seconds) ? seconds : null;
}

/** Seconds in a duration that was validated by the schema; anything else is a programming error. */
export function durationToSeconds(text: string): number {
  const seconds = parseDuration(text);
  if (seconds === null) throw new RangeError(`not a duration: ${JSON.stringify(text)}`);
  return seconds;
}
