"""The demo catalog's vocabulary: categories, colours, patterns, materials and brands, with their synonyms."""

from __future__ import annotations

from dataclasses import dataclass

RGB = tuple[int, int, int]


@dataclass(frozen=True, kw_only=True)
class Category:
    name: str
    synonyms: tuple[str, ...]
    materials: tuple[str, ...]
    price: tuple[float, float]
    blurbs: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Colour:
    name: str
    rgb: RGB
    synonyms: tuple[str, ...]
    similar: tuple[str, ...]


def _cat(name: str, syn: str, mats: str, lo: float, hi: float, *blurbs: str) -> Category:
    return Category(name=name, synonyms=tuple(syn.split(", ")), materials=tuple(mats.split()), price=(lo, hi),
                    blurbs=blurbs)


CATEGORY_SPECS: tuple[Category, ...] = (
    _cat("t-shirt", "tee, t shirt, tshirt, top", "cotton linen polyester", 12, 45,
         "A relaxed everyday fit with short sleeves.", "Crew neck, easy to layer."),
    _cat("dress", "gown, frock, sundress", "cotton linen velvet polyester", 35, 160,
         "Flows from a fitted waist to a flared skirt.", "Made for summer evenings and weddings alike."),
    _cat("trousers", "pants, slacks, chinos", "denim cotton wool linen", 30, 120,
         "Straight legs and a comfortable waistband.", "Smart enough for the office, easy at the weekend."),
    _cat("sneakers", "trainers, running shoes, kicks", "canvas leather suede nylon", 45, 180,
         "Cushioned soles for all-day walking.", "Lace-up trainers that go with everything."),
    _cat("boots", "ankle boots, chelsea boots, booties", "leather suede", 70, 260,
         "A sturdy sole and a pull-on shaft.", "Built for wet pavements and country walks."),
    _cat("handbag", "purse, tote bag, shoulder bag", "leather suede canvas", 40, 400,
         "A top handle and a magnetic clasp.", "Roomy enough for a tablet and the day's essentials."),
    _cat("backpack", "rucksack, daypack, school bag", "canvas nylon leather polyester", 30, 150,
         "Padded straps and a zipped front pocket.", "Fits a 15-inch laptop."),
    _cat("cap", "baseball cap, hat, snapback", "cotton wool denim canvas", 12, 40,
         "A curved brim and an adjustable strap.", "Keeps the sun out of your eyes."),
    _cat("mug", "cup, coffee mug, tea cup", "ceramic porcelain glass", 6, 25,
         "Holds 350 ml of coffee or tea.", "Dishwasher safe, with a comfortable handle."),
    _cat("lamp", "table lamp, desk lamp, lampshade", "metal ceramic glass plastic", 25, 180,
         "A wide shade gives a warm, even light.", "Fits a standard E27 bulb."),
    _cat("chair", "dining chair, seat, side chair", "wood metal plastic velvet", 45, 350,
         "Four steady legs and a supportive back.", "A dining chair for kitchen or cafe."),
    _cat("vase", "flower vase, urn, jar", "ceramic glass porcelain", 12, 90,
         "A narrow neck for a few long stems.", "Looks good with or without flowers."),
    _cat("cushion", "pillow, throw pillow, sofa cushion", "velvet cotton linen wool", 10, 60,
         "Soft filling with a hidden zip.", "Brightens up any sofa or armchair."),
    _cat("watch", "wristwatch, timepiece, wrist watch", "leather metal plastic", 40, 500,
         "Quartz movement with a clear round dial.", "Water resistant to 50 metres."),
    _cat("sunglasses", "shades, sunnies, sun glasses", "plastic metal", 15, 220,
         "UV400 lenses in a lightweight frame.", "Oversized lenses for bright days."),
)

COLOUR_SPECS: tuple[Colour, ...] = tuple(
    Colour(name=n, rgb=rgb, synonyms=tuple(s.split(", ")), similar=tuple(sim.split()))
    for n, rgb, s, sim in (
        ("red", (200, 30, 40), "crimson, scarlet, cherry red", "orange pink"),
        ("orange", (240, 130, 30), "tangerine, pumpkin, amber", "red yellow brown"),
        ("yellow", (240, 205, 40), "mustard, lemon, sunflower yellow", "orange"),
        ("green", (40, 150, 60), "emerald, kelly green, grass green", "teal"),
        ("teal", (0, 140, 140), "turquoise, petrol, aqua", "green blue"),
        ("blue", (40, 110, 215), "royal blue, cobalt, bright blue", "navy teal"),
        ("navy", (25, 40, 105), "dark blue, navy blue, midnight blue", "blue black"),
        ("purple", (125, 50, 160), "violet, plum, aubergine", "pink navy"),
        ("pink", (240, 120, 175), "rose, fuchsia, blush", "red purple"),
        ("brown", (125, 75, 40), "chocolate, cognac, chestnut", "orange"),
        ("black", (25, 25, 28), "jet black, onyx, ebony", "grey navy"),
        ("white", (242, 242, 238), "ivory, snow white, off-white", "grey"),
        ("grey", (135, 135, 138), "gray, slate, ash grey", "black white"),
    )
)

PATTERN_WORDS: dict[str, tuple[str, ...]] = {
    "solid": ("solid", "plain", "single-colour"),
    "striped": ("striped", "stripy", "pinstriped"),
    "dotted": ("polka-dot", "dotted", "spotted"),
    "checked": ("checked", "plaid", "gingham"),
    "zigzag": ("zigzag", "chevron"),
}
PATTERN_PHRASES: dict[str, tuple[str, ...]] = {
    "solid": ("a clean solid colour", "no pattern at all", "a plain finish"),
    "striped": ("{sec} stripes", "a striped pattern", "bold stripes"),
    "dotted": ("{sec} polka dots", "a dotted print", "a spotty pattern"),
    "checked": ("a checked pattern", "a {sec} check", "a windowpane check"),
    "zigzag": ("a zigzag print", "{sec} chevron stripes", "a zigzag pattern"),
}
BRAND_CODES: dict[str, str] = {
    "Kestrel": "KX", "Northwind": "NW", "Alder & Finch": "AF", "Lumo": "LM", "Brightwater": "BW", "Oakhaven": "OH",
    "Saltmarsh": "SM", "Verdant": "VD", "Quillon": "QL", "Marlowe": "MR", "Tessera": "TS", "Halcyon": "HC",
    "Juniper Row": "JR", "Corvid": "CV", "Pellucid": "PL",
}

CATEGORIES: tuple[str, ...] = tuple(c.name for c in CATEGORY_SPECS)
COLOURS: tuple[str, ...] = tuple(c.name for c in COLOUR_SPECS)
PATTERNS: tuple[str, ...] = tuple(PATTERN_WORDS)
MATERIALS: tuple[str, ...] = tuple(sorted({m for c in CATEGORY_SPECS for m in c.materials}))
BRANDS: tuple[str, ...] = tuple(BRAND_CODES)
