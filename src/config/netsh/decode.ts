// Saved netsh output, as bytes, → text: whichever encoding the Windows shell that saved it used.

/**
 * The bytes of a saved netsh output → text. Windows PowerShell's `>` writes UTF-16LE with a BOM,
 * PowerShell 7 UTF-8 without one, cmd.exe's `>` the console's OEM code page (e.g. 850, where
 * "É" is one byte that is not UTF-8): bytes that are not UTF-8 are read as Latin-1, which keeps
 * every ASCII character (all that is parsed) as it is.
 */
export function decodeNetshOutput(bytes: Uint8Array): string {
  const b = bytes;
  if (b[0] === 0xff && b[1] === 0xfe) return new TextDecoder('utf-16le').decode(b.subarray(2));
  if (b[0] === 0xfe && b[1] === 0xff) {
    const swapped = new Uint8Array(b.length - 2 - (b.length % 2));
    for (let i = 0; i < swapped.length; i += 2) {
      swapped[i] = b[i + 3] as number;
      swapped[i + 1] = b[i + 2] as number;
    }
    return new TextDecoder('utf-16le').decode(swapped);
  }
  if (b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return utf8OrLatin1(b.subarray(3));
  if (looksUtf16le(b)) return new TextDecoder('utf-16le').decode(b);
  return utf8OrLatin1(b);
}

/** UTF-16LE without a BOM (Out-File -Encoding unicode -NoBOM…): ASCII text has a NUL every odd byte. */
function looksUtf16le(b: Uint8Array): boolean {
  if (b.length < 4 || b.length % 2 !== 0) return false;
  let oddNul = 0;
  let evenNul = 0;
  for (let i = 0; i < b.length; i += 2) {
    if (b[i] === 0) evenNul++;
    if (b[i + 1] === 0) oddNul++;
  }
  return evenNul === 0 && oddNul >= (b.length / 2) * 0.9;
}

function utf8OrLatin1(b: Uint8Array): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
  }
}

// The tags of `add v4tov4` in the order netsh assigns untagged values to them.
