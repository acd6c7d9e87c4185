/**
 * A PostgreSQL identifier in double quotes, with embedded quotes doubled: `droplets` → `"droplets"`. Every table and
 * column name the library writes into SQL goes through it.
 *
 * @internal
 */
export const quoteIdentifier = (name: string): string => `"${name.replace(/"/g, '""')}"`
