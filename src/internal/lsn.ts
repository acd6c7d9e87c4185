/**
 * A PostgreSQL WAL position (`'16/B374D848'`) as a number, or undefined for anything else.
 *
 * @internal
 */
export function parseLsn(text: unknown): bigint | undefined {
  if (typeof text !== 'string') return undefined
  const match = /^([0-9A-F]{1,8})\/([0-9A-F]{1,8})$/i.exec(text)
  return match === null ? undefined : (BigInt(`0x${match[1]}`) << 32n) + BigInt(`0x${match[2]}`)
}
