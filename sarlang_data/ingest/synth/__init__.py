r"""Seeded synthetic SARLANG-1M release in the authors' layout, from a tiny fixture to full size.

The real release cannot be downloaded on our machines, so this generator stands in for it
everywhere: the test fixtures (``tiny``), the bundled preview (``preview``) and the full-size
scale proof (``full``, exactly the published totals). Same seed and options give byte-identical
files, whatever the number of worker processes.

Layout written under ``out/`` (everything a parser may read is inside ``SARLANG_1M/``; the
ground truth is kept outside it)::

    SARLANG_1M/SARimages/                 image files (names below)
    SARLANG_1M/SARimages_original/        {stem}.tif, float32 single band, linear intensity
                                          (originals=True; high-resolution sources only)
    SARLANG_1M/Text/caption/Caption-training.csv  + .json   mixed concise and detailed
    SARLANG_1M/Text/caption/Caption_test.csv      + .json   detailed only
    SARLANG_1M/Text/caption/Caption_test1.csv     + .json   concise only
    SARLANG_1M/Text/VQA/SARVQA1_train.csv, SARVQA1_test.csv + .json   SARDet-100K images
    SARLANG_1M/Text/VQA/SARVQA2_train.csv, SARVQA2_test.csv + .json   SpaceNet6, DFC2023, OEM-SAR
    truth/texts.csv   truth/images.csv   truth/summary.json
    gsd_table.csv                         file_name,gsd_m for every image file

Image file names (the sources' real patterns):

- DFC2023: ``{SV|GF2}_{City}_{lat}_{lon}.png``, CamelCase city, 4-decimal WGS84 coordinates
  near the real city, e.g. ``SV_Darwin_-12.4278_130.8688.png`` (17 cities).
- OpenEarthMap-SAR: ``{Country}_{Region}_{City}_{n}.png`` with Country in France/Japan/USA,
  Region possibly hyphenated, e.g. ``France_Alpes-Maritimes_Nice_3.png`` (35 regions).
- SpaceNet6: ``SN6_Rotterdam_{YYYYMMDDhhmmss}_tile_{n}.png`` (only the ``SN6_`` prefix is real).
- SARDet-100K: 7-digit zero-padded number, ``0009787.jpg``; sizes vary (about 60% square at
  the image size, 25% square at 3/4 of it, 15% non-square).

High-resolution images are 8-bit grayscale PNG (mode L), ``image_size`` square; SARDet images
are 8-bit grayscale JPEG (quality 90). Pixels: a structured scene (water, fields, roads, blocks
with bright double-bounce edges, ships, tanks, aircraft, cars ...) times 4-look gamma speckle,
10*log10, stretched linearly between the 1st and 99.7th percentile. The ``.tif`` original is
the speckled linear intensity before the stretch. Boxes in region-referring questions are the
boxes of objects actually drawn in the image.

CSV files: UTF-8, no BOM, ``csv`` module (excel dialect, minimal quoting, ``\n`` line ends),
one header line, no text contains a newline (so data row ``r`` is physical line ``r + 1``).

=========================  ==========================================  ======================
file                       header (labels="present")                   header (labels="absent")
=========================  ==========================================  ======================
Caption-training.csv       ``image,caption,type``                       ``image,caption``
Caption_test.csv, _test1   ``image,caption``                            ``image,caption``
SARVQA{1,2}_{split}.csv    ``image,question,answer,type``               ``image,question,answer``
=========================  ==========================================  ======================

``image`` is the bare file name (``0009787.jpg``). The caption ``type`` is ``concise`` or
``complex`` (the paper's word for detailed). The VQA ``type`` is the paper's application name:
``Object Identification``, ``Object Classification``, ``Instance Counting``, ``Region
Referring``, ``Object Positioning``, or for the "Others" application its sub-type: ``Object
Shape``, ``Object Direction``, ``Land Cover``, ``Pattern``, ``Reasoning`` (see ``TYPE_LABELS``).

JSON twins (same stem, ``.json``): one JSON list, one object per line, the same rows in the same
order as the CSV, in LLaMA-Factory layout::

    {"messages":[{"role":"user","content":"<image>QUESTION"},
                 {"role":"assistant","content":"ANSWER"}],"images":["SARimages/NAME"]}

Captions use the user content ``"<image>Describe the content of this image in one sentence."``.
With labels="present" the object has the extra key ``"type"`` with the CSV's value.

Answers: SARVQA1 answers are lowercase without a period (``yes``, ``no``, a class of ship,
tank, aircraft, bridge, car, harbor, a position of top, center, bottom, left, right, or an
integer); SARVQA2 answers are capitalised short phrases (``Yes``, ``Grid pattern``, ``Top left``,
one of the 16 land-cover strings), sometimes ending in a period. Region-referring questions hold
a COCO box ``[x, y, w, h]`` in pixels written as floats (``[56.0, 19.0, 12.0, 8.0]``).

Injected defects (what real releases contain; every one is recorded in the truth, and none is
counted in the published totals): ``unused_image`` (a high-resolution image no text names, about
0.7% of them), ``missing_image`` (a text row naming an image file that does not exist),
``duplicate_row`` (an exact copy, label column included, of an earlier row of the same file,
emitted after the next image's rows), ``empty_text`` (a row whose answer or caption is empty).
Missing images carry names of the usual patterns (``GF2_NewYork_...``, ``SN6_Rotterdam_...``,
7-digit ``.jpg``), like the PNGs once missing from the authors' upload.

truth/texts.csv, one line per data row of every CSV (and so of its JSON twin), columns
``file,row,line,image,split,subset,task,question_type,kind,defect,duplicate_of``: ``file`` is
relative to ``SARLANG_1M`` (``Text/VQA/SARVQA1_train.csv``); ``row`` is the 1-based data row (the
1-based position in the JSON list); ``line`` the physical line (header = line 1); ``subset``,
``task`` and ``question_type`` are empty for captions (``question_type`` uses schema's rule: the
task name, or the others sub-type); ``kind`` (concise|detailed) is empty for QA; ``defect`` is
empty or a reason above; ``duplicate_of`` the row a duplicate copies.

truth/images.csv, one line per image file: ``file_name,source,split,city,country,region,lat,lon,
gsd_m,tier,width,height,subdataset,defect`` (city and country are schema slugs, ``unlocated``
and empty for SARDet-100K; region as spelled in the file name; split is empty for unused
images; subdataset is the SARDet-100K sub-dataset that set its GSD).

truth/summary.json is the dict :func:`generate` returns.

Counts (valid rows; defects come on top):

=======  =======  ========  =========  =======================================================
preset   images   captions  QA         notes
=======  =======  ========  =========  =======================================================
tiny     40       75        370        all sources, splits, tiers, tasks, others sub-types and
                                       kinds in both splits; 19 cities; 64 px; ~0.5 s
preview  200      219       2,270      42 cities; 128 px; ~1.8 MB of images
medium   11,833   4,565     108,062    a tenth of full (every count rounded); 64 px; for
                                       benchmarks at the release's 512 px (~2.6 GB)
full     118,331  45,650    1,080,627  the published totals (below); 64 px; texts alone ~20 s,
                                       with images ~2 min on 2 cores
=======  =======  ========  =========  =======================================================

``full`` reproduces every published number: images SpaceNet6 3,311, DFC2023 5,222, OEM-SAR
4,813 (7:3 split: 9,341 train / 4,005 test caption images), SARDet-100K 94,493 train / 10,492
test; captions concise 17,487 / 7,492, detailed 14,481 / 6,190; QA per application
(identification 484,620, classification 132,525, counting 117,382, region referring 221,450,
positioning 106,171, others 18,479 = shape 2,391 + direction 1,103 + land cover 80 + pattern 857
+ reasoning 14,048) and per split (955,372 / 125,255). The per-subset split is not published:
SARVQA2 gets all of "others" and identification 26,000, classification 8,000, counting 7,000,
region referring 12,000, positioning 6,000 (77,479 in all, about 5.8 per image); SARVQA1 the
rest (about 9.6 per image). Every high-resolution image has at least one caption of each kind
and one SARVQA2 QA; every SARDet-100K image at least one SARVQA1 QA. Injected defects in
``full``: 87 unused images, 44 missing-image rows, 58 duplicate rows, 26 empty texts.
"""

from .layout import generate
from .plan import (
    CAPTION_FILES,
    CAPTION_PROMPT,
    CATEGORIES,
    DEFAULT_IMAGE_SIZE,
    DEFECTS,
    DFC_CITIES,
    HIGH_RES,
    KIND_LABELS,
    LABEL_MODES,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
    PRESETS,
    TRUTH_IMAGE_HEADER,
    TRUTH_TEXT_HEADER,
    TYPE_LABELS,
    VQA_FILES,
    _plan,
)

__all__ = [
    "CAPTION_FILES",
    "CAPTION_PROMPT",
    "CATEGORIES",
    "DEFAULT_IMAGE_SIZE",
    "DEFECTS",
    "DFC_CITIES",
    "HIGH_RES",
    "KIND_LABELS",
    "LABEL_MODES",
    "MAX_IMAGE_SIZE",
    "MIN_IMAGE_SIZE",
    "PRESETS",
    "TRUTH_IMAGE_HEADER",
    "TRUTH_TEXT_HEADER",
    "TYPE_LABELS",
    "VQA_FILES",
    "_plan",
    "generate",
]
