"""The deterministic English text every completion is cut from."""

from __future__ import annotations

# An original paragraph. A few non-ASCII characters are there on purpose: the CJK one is
# split over several byte-level tokens, which exercises the held-back incremental decoding.
PARAGRAPH = (
    "The lighthouse keeper woke before dawn, as she had every morning for thirty years, and "
    "climbed the spiral stairs with a mug of coffee warming her hands. From the lantern room "
    "she could see the whole bay: the fishing boats leaving the harbour in a loose line, the "
    "gulls circling above them, and the low grey islands that marked the edge of the open "
    "sea. Her logbook lay open on the desk. She wrote the date, the wind direction, the "
    "height of the swell and the colour of the sky — pale gold over the hills, still dark in "
    "the west. Nothing about the routine had changed since her first winter, yet every "
    "morning felt slightly different. Some days the fog rolled in so thick that the beam "
    "seemed to stop a few metres from the glass; other days the air was so clear that she "
    "could count the windows of the café on the far shore. Visitors sometimes asked whether "
    "the work was lonely. She found the question naïve but never said so. The sea was "
    "company enough, she told them, and the radio kept her informed about the ships passing "
    "north toward the port. In the afternoons she repaired whatever the salt had damaged: a "
    "hinge, a railing, a cracked pane in the storeroom. In the evenings she cooked simple "
    "meals, usually grilled sardines, which a Japanese sailor had once taught her to call "
    "鰯, and read novels borrowed from the library in town. When the automatic lamp was "
    "installed, the authorities offered her a pension and a small house inland. She thanked "
    "them politely and stayed. Someone, she said, still had to watch the weather, answer the "
    "radio, and remember what the light was for."
)

WORDS: tuple[str, ...] = tuple(PARAGRAPH.split())

# Both primes, and neither divides len(WORDS): consecutive seeds, and the choices of one
# request, start at different words.
_SEED_STRIDE = 101
_CHOICE_STRIDE = 37


def start_word(seed: int, choice: int) -> int:
    return (seed * _SEED_STRIDE + choice * _CHOICE_STRIDE) % len(WORDS)


def completion_text(seed: int, choice: int, copies: int) -> str:
    """The paragraph rotated to a start word chosen by seed and choice, repeated ``copies``
    times. A text with more copies starts with the text with fewer."""
    start = start_word(seed, choice)
    words = WORDS[start:] + WORDS[:start]
    first = words[0]
    rotated = " ".join((first[:1].upper() + first[1:], *words[1:]))
    return " ".join([rotated] * copies)
