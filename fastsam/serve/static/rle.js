// COCO compressed RLE in the browser: decode the counts string and paint the runs into RGBA pixels.
"use strict";

/** Counts (alternating runs of 0s and 1s, column-major) from COCO's compressed string. */
function decodeCocoCounts(text) {
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let value = 0, shift = 0, more = true;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      value |= (c & 0x1f) << shift;
      more = (c & 0x20) !== 0;
      p += 1;
      shift += 5;
      if (!more && (c & 0x10)) value |= -1 << shift;  // sign-extend the last 5-bit group
    }
    // From the third count on, each is stored as the difference from the count two places before.
    if (counts.length > 2) value += counts[counts.length - 2];
    counts.push(value);
  }
  return counts;
}

/** Paint a mask {size: [h, w], counts} into RGBA `pixels` (of the same w x h) with colour [r, g, b, a]. */
function paintRle(pixels, rle, color) {
  const [h, w] = rle.size;
  const counts = decodeCocoCounts(rle.counts);
  let index = 0;
  for (let k = 0; k < counts.length; k++) {
    const end = index + counts[k];
    if (k % 2 === 1) {
      for (let i = index; i < end; i++) {
        const x = (i / h) | 0, y = i - x * h;
        const o = (y * w + x) * 4;
        pixels[o] = color[0]; pixels[o + 1] = color[1]; pixels[o + 2] = color[2]; pixels[o + 3] = color[3];
      }
    }
    index = end;
  }
}
