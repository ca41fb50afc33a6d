"""The 80 COCO object categories (id, name, supercategory), as COCO 2014's ``instances_*.json`` lists them.

The Hugging Face copies of the REFER refs carry each ref's ``category_id`` but not the category table
that ``instances.json`` holds and that the official REFER API reads (``instances['categories']``), so the
conversion writes this one (Lin et al., ECCV 2014; the ids skip 12, 26, 29, 30, 45, 66, 68, 69, 71, 83).
"""

from __future__ import annotations

_TABLE = """\
1 person person|2 bicycle vehicle|3 car vehicle|4 motorcycle vehicle|5 airplane vehicle|6 bus vehicle|
7 train vehicle|8 truck vehicle|9 boat vehicle|10 traffic_light outdoor|11 fire_hydrant outdoor|
13 stop_sign outdoor|14 parking_meter outdoor|15 bench outdoor|16 bird animal|17 cat animal|18 dog animal|
19 horse animal|20 sheep animal|21 cow animal|22 elephant animal|23 bear animal|24 zebra animal|
25 giraffe animal|27 backpack accessory|28 umbrella accessory|31 handbag accessory|32 tie accessory|
33 suitcase accessory|34 frisbee sports|35 skis sports|36 snowboard sports|37 sports_ball sports|
38 kite sports|39 baseball_bat sports|40 baseball_glove sports|41 skateboard sports|42 surfboard sports|
43 tennis_racket sports|44 bottle kitchen|46 wine_glass kitchen|47 cup kitchen|48 fork kitchen|
49 knife kitchen|50 spoon kitchen|51 bowl kitchen|52 banana food|53 apple food|54 sandwich food|
55 orange food|56 broccoli food|57 carrot food|58 hot_dog food|59 pizza food|60 donut food|61 cake food|
62 chair furniture|63 couch furniture|64 potted_plant furniture|65 bed furniture|67 dining_table furniture|
70 toilet furniture|72 tv electronic|73 laptop electronic|74 mouse electronic|75 remote electronic|
76 keyboard electronic|77 cell_phone electronic|78 microwave appliance|79 oven appliance|
80 toaster appliance|81 sink appliance|82 refrigerator appliance|84 book indoor|85 clock indoor|
86 vase indoor|87 scissors indoor|88 teddy_bear indoor|89 hair_drier indoor|90 toothbrush indoor"""


def categories() -> list[dict]:
    """``[{"supercategory", "id", "name"}, ...]`` in id order (80 entries)."""
    out = []
    for item in _TABLE.replace("\n", "").split("|"):
        cid, name, sup = item.split()
        out.append({"supercategory": sup, "id": int(cid), "name": name.replace("_", " ")})
    return out


def id_by_name() -> dict[str, int]:
    return {c["name"]: c["id"] for c in categories()}


__all__ = ["categories", "id_by_name"]
