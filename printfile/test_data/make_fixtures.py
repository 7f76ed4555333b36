#!/usr/bin/env python3
"""Writes printfile's test files: print files laid out as each slicer writes them, and hostile
ones. Run from anywhere: `python3 printfile/test_data/make_fixtures.py`; the output is
committed (`--check` says whether it is current; zlib's output may differ between versions,
so the tests read the committed files and never run this).

The layouts follow real files and the slicers' own sources (docs/research/print-files.md): entry names and order, which entries are stored and which deflated, Bambu Studio's
uppercase `.gcode.md5`, slice_info.config's keys, the G-code comment blocks of each slicer
and version. The G-code bodies are short but real G-code.
"""

import hashlib
import io
import json
import os
import struct
import sys
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
STAMP = (2026, 1, 2, 3, 4, 6)


def png(width, height, rgb):
    """A valid PNG of one colour."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    row = b"\x00" + bytes(rgb) * width
    raw = row * height
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def moves(layers, per_layer=40):
    out = []
    for layer in range(layers):
        z = 0.2 * (layer + 1)
        out.append(f";LAYER_CHANGE\n;Z:{z:.2f}\nG1 Z{z:.2f} F720")
        for i in range(per_layer):
            x = 100 + (i % 20)
            y = 100 + (i // 20) * 5
            out.append(f"G1 X{x:.3f} Y{y:.3f} E{0.05 * (i + 1):.5f}")
    return "\n".join(out) + "\n"


def thumbnail_block(tag, width, height, data):
    b64 = __import__("base64").b64encode(data).decode()
    lines = [f"; {b64[i:i + 78]}" for i in range(0, len(b64), 78)]
    return f";\n; {tag} begin {width}x{height} {len(b64)}\n" + "\n".join(lines) + f"\n; {tag} end\n;\n"


def entry(archive, name, data, stored=False):
    info = zipfile.ZipInfo(name, STAMP)
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, data)


class Unseekable(io.RawIOBase):
    """A stream zipfile cannot seek in: it then writes data descriptors after each entry
    and zero sizes in the local headers, as streaming writers do."""
    def __init__(self):
        self.buffer = bytearray()

    def writable(self):
        return True

    def write(self, data):
        self.buffer += data
        return len(data)


CONTENT_TYPES = """<?xml version="1.0" encoding="UTF-8"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
 <Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
 <Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>
 <Default Extension="png" ContentType="image/png"/>
 <Default Extension="gcode" ContentType="text/x.gcode"/>
</Types>
"""

RELS = """<?xml version="1.0" encoding="UTF-8"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
 <Relationship Target="/3D/3dmodel.model" Id="rel-1" Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>
 <Relationship Target="/Metadata/plate_{n}.png" Id="rel-2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/thumbnail"/>
 <Relationship Target="/Metadata/plate_{n}.png" Id="rel-4" Type="http://schemas.bambulab.com/package/2021/cover-thumbnail-middle"/>
 <Relationship Target="/Metadata/plate_{n}_small.png" Id="rel-5" Type="http://schemas.bambulab.com/package/2021/cover-thumbnail-small"/>
</Relationships>
"""

MODEL = """<?xml version="1.0" encoding="UTF-8"?>
<model unit="millimeter" xml:lang="en-US" xmlns="http://schemas.microsoft.com/3dmanufacturing/core/2015/02" xmlns:BambuStudio="http://schemas.bambulab.com/package/2021">
 <metadata name="Application">BambuStudio-01.10.01.50</metadata>
 <resources>
  <object id="1" type="model"><mesh><vertices>
   <vertex x="0" y="0" z="0"/><vertex x="20" y="0" z="0"/><vertex x="0" y="20" z="0"/><vertex x="0" y="0" z="20"/>
  </vertices><triangles>
   <triangle v1="0" v2="2" v3="1"/><triangle v1="0" v2="1" v3="3"/><triangle v1="0" v2="3" v3="2"/><triangle v1="1" v2="2" v3="3"/>
  </triangles></mesh></object>
 </resources>
 <build><item objectid="1" transform="1 0 0 0 1 0 0 0 1 128 128 0" printable="1"/></build>
</model>
"""


def bambu_gcode(version, estimate, layers, weights, lengths):
    header = (
        "; HEADER_BLOCK_START\n"
        f"; BambuStudio {version}\n"
        f"; model printing time: 1h 7m 26s; total estimated time: {estimate}\n"
        f"; total layer number: {layers}\n"
        f"; total filament length [mm] : {','.join(lengths)}\n"
        f"; total filament volume [cm^3] : 7074.27,1047.64\n"
        f"; total filament weight [g] : {','.join(weights)}\n"
        "; filament_density: 1.25,1.25,1.27\n"
        "; filament_diameter: 1.75,1.75,1.75\n"
        "; max_z_height: 2.50\n"
        "; filament: 1,2,6\n"
        "; HEADER_BLOCK_END\n\n"
        "; CONFIG_BLOCK_START\n"
        "; curr_bed_type = Textured PEI Plate\n"
        "; filament_colour = #0DFF00;#000000;#FFFFFF;#FFFFFF;#FFFFFF;#0DFF00\n"
        "; filament_type = PLA;PLA;PLA;PLA;PLA;PLA\n"
        "; nozzle_diameter = 0.4\n"
        "; printer_model = Bambu Lab A1\n"
        "; CONFIG_BLOCK_END\n\n"
        "; EXECUTABLE_BLOCK_START\n"
        "M73 P0 R75\nM201 X12000 Y12000 Z1500 E5000\nG28\nM104 S220\nM140 S65\n"
    )
    return header + moves(layers) + "M73 P100 R0\n; EXECUTABLE_BLOCK_END\n"


def bambu_studio_a1():
    """Bambu Studio 01.10.01.50, A1 (N2S), one plate, filaments 1, 2 and 6 (a gap)."""
    gcode = bambu_gcode("01.10.01.50", "1h 30m 50s", 6, ["20.26", "2.15", "3.58"], ["6790.00", "720.00", "1200.00"]).encode()
    slice_info = """<?xml version="1.0" encoding="UTF-8"?>
<config>
  <header>
    <header_item key="X-BBL-Client-Type" value="slicer"/>
    <header_item key="X-BBL-Client-Version" value="01.10.01.50"/>
  </header>
  <plate>
    <metadata key="index" value="1"/>
    <metadata key="printer_model_id" value="N2S"/>
    <metadata key="nozzle_diameters" value="0.4"/>
    <metadata key="timelapse_type" value="0"/>
    <metadata key="prediction" value="5450"/>
    <metadata key="weight" value="26.91"/>
    <metadata key="outside" value="false"/>
    <metadata key="support_used" value="false"/>
    <metadata key="label_object_enabled" value="true"/>
    <object identify_id="930" name="Benchy &amp; friends" skipped="false" />
    <filament id="1" tray_info_idx="GFL99" type="PLA" color="#0DFF00" used_m="6.79" used_g="20.26" />
    <filament id="2" tray_info_idx="GFL99" type="PLA" color="#000000" used_m="0.72" used_g="2.15" />
    <filament id="6" tray_info_idx="GFL99" type="PLA" color="#0DFF00" used_m="1.20" used_g="3.58" />
    <warning msg="bed_temperature_too_high_than_filament" level="1" error_code ="1000C001"  />
  </plate>
</config>
"""
    settings = {
        "printer_model": "Bambu Lab A1", "printer_settings_id": "Bambu Lab A1 0.4 nozzle",
        "printer_variant": "0.4", "nozzle_diameter": ["0.4"], "curr_bed_type": "Textured PEI Plate",
        "filament_type": ["PLA"] * 6, "filament_colour": ["#0DFF00", "#000000", "#FFFFFF", "#FFFFFF", "#FFFFFF", "#0DFF00"],
        "version": "01.10.01.50",
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        entry(z, "[Content_Types].xml", CONTENT_TYPES)
        entry(z, "_rels/.rels", RELS.format(n=1))
        entry(z, "3D/3dmodel.model", MODEL)
        entry(z, "Metadata/plate_1.gcode", gcode)
        entry(z, "Metadata/plate_1.gcode.md5", hashlib.md5(gcode).hexdigest().upper())
        entry(z, "Metadata/model_settings.config", '<?xml version="1.0" encoding="UTF-8"?>\n<config>\n  <plate>\n    <metadata key="plater_id" value="1"/>\n    <metadata key="gcode_file" value="Metadata/plate_1.gcode"/>\n  </plate>\n</config>\n')
        entry(z, "Metadata/slice_info.config", slice_info)
        entry(z, "Metadata/project_settings.config", json.dumps(settings, indent=4))
        entry(z, "Metadata/plate_1.png", png(64, 64, (13, 255, 0)), stored=True)
        entry(z, "Metadata/plate_1_small.png", png(16, 16, (13, 255, 0)), stored=True)
        entry(z, "Metadata/plate_no_light_1.png", png(64, 64, (10, 200, 0)), stored=True)
        entry(z, "Metadata/top_1.png", png(32, 32, (0, 0, 0)), stored=True)
        entry(z, "Metadata/pick_1.png", png(32, 32, (1, 2, 3)), stored=True)
    return out.getvalue()


def orca_a1_mini_plates_2_and_3():
    """OrcaSlicer 2.3.1, A1 mini, plates 2 and 3 of a project (no plate 1), written with data
    descriptors."""
    def plate_gcode(estimate, layers):
        return (
            "; HEADER_BLOCK_START\n"
            "; generated by OrcaSlicer 2.3.1-alpha on 2025-09-09 at 10:28:50\n"
            f"; model printing time: 2h 39m 9s; total estimated time: {estimate}\n"
            "; estimated first layer printing time (normal mode) = 5m 36s\n"
            f"; total layer number: {layers}\n"
            "; model label id: 100\n"
            "; filament_density: 1.24\n"
            "; filament_diameter: 1.75\n"
            "; max_z_height: 39.96\n"
            "; HEADER_BLOCK_END\n\n"
            "; CONFIG_BLOCK_START\n"
            "; curr_bed_type = Textured PEI Plate\n"
            "; filament_colour = #FFFFFF;#FF6A13\n"
            "; filament_ids = GFL99;GFG99\n"
            "; filament_settings_id = \"Generic PLA @BBL A1M\";\"Generic PETG @BBL A1M\"\n"
            "; filament_type = PLA;PETG\n"
            "; nozzle_diameter = 0.4\n"
            "; printer_model = Bambu Lab A1 mini\n"
            "; CONFIG_BLOCK_END\n\n"
            "; EXECUTABLE_BLOCK_START\nG28\nM104 S220\n" + moves(layers) + "; EXECUTABLE_BLOCK_END\n"
        ).encode()
    plates = {2: plate_gcode("2h 44m 46s", 5), 3: plate_gcode("45m 12s", 3)}
    slice_info = """<?xml version="1.0" encoding="UTF-8"?>
<config>
  <header>
    <header_item key="X-BBL-Client-Type" value="slicer"/>
    <header_item key="X-BBL-Client-Version" value="02.03.01.51"/>
    <header_item key="OrcaSlicer-Version" value="2.3.1-alpha"/>
  </header>
  <plate>
    <metadata key="index" value="2"/>
    <metadata key="printer_model_id" value="N1"/>
    <metadata key="nozzle_diameters" value="0.4"/>
    <metadata key="timelapse_type" value="0"/>
    <metadata key="prediction" value="9886"/>
    <metadata key="weight" value="41.50"/>
    <metadata key="outside" value="false"/>
    <metadata key="support_used" value="false"/>
    <metadata key="label_object_enabled" value="true"/>
    <metadata key="filament_maps" value="1 1"/>
    <object identify_id="100" name="Gear_id_0_copy_0" skipped="false" />
    <object identify_id="101" name="Gear_id_0_copy_1" skipped="false" />
    <filament id="1" tray_info_idx="GFL99" type="PLA" color="#FFFFFF" used_m="12.10" used_g="36.10" used_for_object="true" used_for_support="false" />
    <filament id="2" tray_info_idx="GFG99" type="PETG" color="#FF6A13" used_m="1.71" used_g="5.40" used_for_object="false" used_for_support="true" />
  </plate>
  <plate>
    <metadata key="index" value="3"/>
    <metadata key="printer_model_id" value="N1"/>
    <metadata key="nozzle_diameters" value="0.4"/>
    <metadata key="prediction" value="2712"/>
    <metadata key="weight" value="9.80"/>
    <object identify_id="200" name="Clip" skipped="false" />
    <filament id="2" tray_info_idx="GFG99" type="PETG" color="#ff6a13" used_m="3.10" used_g="9.80" />
  </plate>
</config>
"""
    settings = {
        "printer_model": "Bambu Lab A1 mini", "printer_settings_id": "Bambu Lab A1 mini 0.4 nozzle - NOVIBE",
        "printer_variant": "0.4", "nozzle_diameter": ["0.4"], "curr_bed_type": "Textured PEI Plate",
        "filament_type": ["PLA", "PETG"], "filament_colour": ["#FFFFFF", "#FF6A13"],
        "filament_ids": ["GFL99", "GFG99"], "version": "2.3.1-alpha",
    }
    stream = Unseekable()
    with zipfile.ZipFile(stream, "w") as z:
        entry(z, "[Content_Types].xml", CONTENT_TYPES)
        entry(z, "_rels/.rels", RELS.format(n=2))
        entry(z, "3D/3dmodel.model", MODEL)
        for n, gcode in plates.items():
            entry(z, f"Metadata/plate_{n}.gcode", gcode)
            entry(z, f"Metadata/plate_{n}.gcode.md5", hashlib.md5(gcode).hexdigest().upper())
            entry(z, f"Metadata/plate_{n}.png", png(48, 48, (255, 106, 19)), stored=True)
            entry(z, f"Metadata/plate_{n}_small.png", png(16, 16, (255, 106, 19)), stored=True)
        entry(z, "Metadata/slice_info.config", slice_info)
        entry(z, "Metadata/project_settings.config", json.dumps(settings, indent=4))
    return bytes(stream.buffer)


def hand_trimmed_template():
    """A file made by a third-party tool from a template: a trimmed slice_info (empty
    client version, no prediction or weight), no .md5, no pictures, no settings."""
    gcode = ("; HEADER_BLOCK_START\n; generated by OrcaSlicer 2.3.1-alpha on 2025-09-09 at 10:28:50\n"
             "; model printing time: 20m 1s; total estimated time: 24m 30s\n; total layer number: 4\n"
             "; HEADER_BLOCK_END\nG28\n" + moves(4)).encode()
    slice_info = """<?xml version="1.0" encoding="UTF-8"?>
<config>
  <header>
    <header_item key="X-BBL-Client-Type" value="slicer"/>
    <header_item key="X-BBL-Client-Version" value=""/>
  </header>
  <plate>
    <metadata key="index" value="1"/>
    <metadata key="printer_model_id" value="N1"/>
    <metadata key="nozzle_diameters" value="0.4"/>
    <filament id="1" type="PLA" color="#FFFFFF" used_m="1.5" used_g="4.5"/>
  </plate>
</config>"""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        entry(z, "Metadata/slice_info.config", slice_info, stored=True)
        entry(z, "Metadata/plate_1.gcode", gcode, stored=True)
    return out.getvalue()


def prusaslicer_mk4():
    """PrusaSlicer 2.8.1 for an MK4: PNG and QOI pictures at the head, the summary and the
    configuration at the tail."""
    head = "; generated by PrusaSlicer 2.8.1+linux-x64-GTK3 on 2026-01-28 at 06:32:21 UTC\n\n"
    head += "; \n; external perimeters extrusion width = 0.45mm\n; perimeters extrusion width = 0.45mm\n\n"
    head = ("; generated by PrusaSlicer 2.8.1+linux-x64-GTK3 on 2026-01-28 at 06:32:21 UTC\n\n"
            + thumbnail_block("thumbnail", 16, 12, png(16, 12, (255, 128, 0)))
            + thumbnail_block("thumbnail", 313, 173, png(313, 173, (255, 128, 0)))
            + thumbnail_block("thumbnail_QOI", 2, 2, b"qoif\x00\x00\x00\x02\x00\x00\x00\x02\x04\x00" + b"\x00" * 7 + b"\x01")
            + "; external perimeters extrusion width = 0.45mm\n\n")
    body = "M73 P0 R67\nM201 X4000 Y4000 Z200 E2500\nG28 ; home all without mesh bed level\nM104 S215\n" + moves(60)
    tail = (
        "M107\n;TYPE:Custom\n; Filament-specific end gcode\nG1 Z40 F720\nM84 X Y E\n\n"
        "; filament used [mm] = 3891.52, 0.00\n"
        "; filament used [cm3] = 9.36, 0.00\n"
        "; filament used [g] = 11.61, 0.00\n"
        "; filament cost [money] = 0.29, 0.00\n"
        "; total filament used [g] = 11.61\n"
        "; total filament cost = 0.29\n"
        "; total layers count = 60\n"
        "; estimated printing time (normal mode) = 1h 6m 40s\n"
        "; estimated first layer printing time (normal mode) = 1m 58s\n"
        "; estimated printing time (silent mode) = 1h 8m 4s\n\n"
        "; prusaslicer_config = begin\n"
        "; bed_temperature = 60\n"
        "; extruder_colour = \"\";\"\"\n"
        "; filament_colour = #FF8000;#000000\n"
        "; filament_settings_id = \"Prusament PLA\";\"Prusament PETG\"\n"
        "; filament_type = PLA;PETG\n"
        "; layer_height = 0.2\n"
        "; nozzle_diameter = 0.4,0.4\n"
        "; printer_model = MK4\n"
        "; printer_settings_id = Original Prusa MK4 Input Shaper 0.4 nozzle\n"
        "; prusaslicer_config = end\n"
    )
    return (head + body + tail).encode()


def orca_voron():
    """OrcaSlicer 2.1.1 for a Voron (not a Bambu printer): header and pictures at the head,
    the summary and the configuration at the tail."""
    head = (
        "; HEADER_BLOCK_START\n"
        "; generated by OrcaSlicer 2.1.1 on 2024-07-01 at 10:00:00\n"
        "; total layer number: 40\n"
        "; filament_density: 1.24\n"
        "; filament_diameter: 1.75\n"
        "; max_z_height: 8.00\n"
        "; HEADER_BLOCK_END\n\n"
        "; THUMBNAIL_BLOCK_START\n"
        + thumbnail_block("thumbnail", 300, 300, png(300, 300, (40, 40, 200)))
        + "; THUMBNAIL_BLOCK_END\n\n"
        "; external perimeters extrusion width = 0.42mm\n\n"
        "; EXECUTABLE_BLOCK_START\nPRINT_START BED=100 HOTEND=250\nG28\n"
    )
    tail = (
        "; EXECUTABLE_BLOCK_END\n\n"
        "; filament used [mm] = 2050.10\n"
        "; filament used [cm3] = 4.93\n"
        "; filament used [g] = 6.31\n"
        "; filament cost = 0.13\n"
        "; total filament used [g] = 6.31\n"
        "; total filament cost = 0.13\n"
        "; total layers count = 40\n"
        "; estimated printing time (normal mode) = 34m 3s\n\n"
        "; CONFIG_BLOCK_START\n"
        "; curr_bed_type = High Temp Plate\n"
        "; filament_colour = #2828C8\n"
        "; filament_settings_id = \"Voron ABS\"\n"
        "; filament_type = ABS\n"
        "; nozzle_diameter = 0.4\n"
        "; printer_model = Voron 2.4 350\n"
        "; printer_settings_id = Voron 2.4 350 0.4 nozzle\n"
        "; CONFIG_BLOCK_END\n"
    )
    return (head + moves(40) + tail).encode()


def bambu_studio_generic():
    """Bambu Studio 01.09.07.52 slicing for a printer that is not a Bambu: Prusa-style time
    line in the header."""
    return (
        "; HEADER_BLOCK_START\n; BambuStudio 01.09.07.52\n"
        "; estimated printing time (normal mode) = 34s\n; total layer number: 5\n"
        "; total filament length [mm] : 19.37\n; total filament volume [cm^3] : 46.58\n"
        "; total filament weight [g] : 0.06\n; HEADER_BLOCK_END\n\nG28\n" + moves(5)
        + "; CONFIG_BLOCK_START\n; filament_type = PLA\n; filament_colour = #FFFFFF\n; nozzle_diameter = 0.6\n; CONFIG_BLOCK_END\n"
    ).encode()


def cura_marlin():
    """Cura 5.5.0 for an Ender-3 Pro (Marlin flavour): the header at the head, seconds,
    metres, no material type."""
    return (
        ";FLAVOR:Marlin\n;TIME:8235\n;Filament used: 5.96619m\n;Layer height: 0.2\n"
        ";MINX:90.491\n;MINY:87.431\n;MINZ:0.3\n;MAXX:121.549\n;MAXY:122.671\n;MAXZ:101.175\n"
        ";TARGET_MACHINE.NAME:Creality Ender-3 Pro\n;Generated with Cura_SteamEngine 5.5.0\n"
        "M140 S60\nM105\nM190 S60\nM104 S200\nM109 S200\nM82 ;absolute extrusion mode\nG28 ;Home\n"
        ";LAYER_COUNT:30\n;LAYER:0\n" + moves(30) + ";TIME_ELAPSED:8235.1\n;End of Gcode\n"
        ";SETTING_3 {\"global_quality\": \"[general]\\\\nversion = 4\\\\nname = Standard\"}\n"
    ).encode()


def cura_griffin():
    """Cura 4.5.0 for an Ultimaker 3 (Griffin flavour)."""
    return (
        ";START_OF_HEADER\n;HEADER_VERSION:0.1\n;FLAVOR:Griffin\n;GENERATOR.NAME:Cura_SteamEngine\n"
        ";GENERATOR.VERSION:4.5.0\n;GENERATOR.BUILD_DATE:2020-02-25\n;TARGET_MACHINE.NAME:Ultimaker 3\n"
        ";EXTRUDER_TRAIN.0.INITIAL_TEMPERATURE:235\n;EXTRUDER_TRAIN.0.MATERIAL.VOLUME_USED:2911\n"
        ";EXTRUDER_TRAIN.0.MATERIAL.GUID:03f24266-0291-43c2-a6da-5211892a2699\n"
        ";EXTRUDER_TRAIN.0.NOZZLE.DIAMETER:0.8\n;EXTRUDER_TRAIN.0.NOZZLE.NAME:AA 0.8\n"
        ";BUILD_PLATE.TYPE:glass\n;BUILD_PLATE.INITIAL_TEMPERATURE:60\n;PRINT.TIME:480\n;PRINT.GROUPS:1\n"
        ";END_OF_HEADER\n;Generated with Cura_SteamEngine 4.5.0\nT0\nM82 ;absolute extrusion mode\nG92 E0\nG280\n"
        + moves(3)
    ).encode()


# --- hostile files -------------------------------------------------------------------------

def zip_bomb():
    """One entry claiming 64 MiB from a few KiB (a ratio near deflate's limit)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        entry(z, "Metadata/plate_1.gcode", b"G1 X0\n" + b"\x00" * (64 << 20))
    return out.getvalue()


def traversal():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        entry(z, "Metadata/plate_1.gcode", b"G28\nG1 X1\n")
        entry(z, "../../etc/cron.d/evil", b"* * * * * root sh -c 'id'\n")
    return out.getvalue()


def overlapping():
    """Two central-directory entries pointing at one local entry: the overlapping-file
    bomb's trick."""
    data = bytearray(hand_trimmed_template())
    end = data.rindex(b"PK\x05\x06")
    count, cd_size, cd_offset = struct.unpack("<HII", data[end + 10:end + 20])
    cd = data[cd_offset:cd_offset + cd_size]
    first_len = 46 + sum(struct.unpack("<HHH", cd[28:34]))
    duplicate = bytearray(cd[:first_len])
    name_len = struct.unpack("<H", duplicate[28:30])[0]
    duplicate[46:46 + name_len] = b"Metadata/plate_9.gcode"[:name_len].ljust(name_len, b"_")
    new_cd = cd + duplicate
    tail = bytearray(data[end:])
    tail[8:10] = struct.pack("<H", count + 1)
    tail[10:12] = struct.pack("<H", count + 1)
    tail[12:16] = struct.pack("<I", len(new_cd))
    return bytes(data[:cd_offset] + new_cd + tail)


def project_without_gcode():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        entry(z, "[Content_Types].xml", CONTENT_TYPES)
        entry(z, "_rels/.rels", RELS.format(n=1))
        entry(z, "3D/3dmodel.model", MODEL)
        entry(z, "Metadata/plate_1.png", png(8, 8, (0, 0, 0)), stored=True)
    return out.getvalue()


def changed_after_slicing():
    """plate_1.gcode edited after slicing: its .md5 no longer matches."""
    data = bambu_studio_a1()
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "Metadata/plate_1.gcode":
                content = content.replace(b"M104 S220", b"M104 S290")
            entry(z, info.filename, content, stored=info.compress_type == zipfile.ZIP_STORED)
    return out.getvalue()


FIXTURES = {
    "bambu-studio-1.10-a1.gcode.3mf": bambu_studio_a1,
    "orca-2.3-a1-mini-plates-2-3.gcode.3mf": orca_a1_mini_plates_2_and_3,
    "template-trimmed.gcode.3mf": hand_trimmed_template,
    "prusaslicer-2.8-mk4.gcode": prusaslicer_mk4,
    "orca-2.1-voron.gcode": orca_voron,
    "bambu-studio-1.9-generic.gcode": bambu_studio_generic,
    "cura-5.5-ender3.gcode": cura_marlin,
    "cura-4.5-griffin-um3.gcode": cura_griffin,
    "hostile/zip-bomb.gcode.3mf": zip_bomb,
    "hostile/traversal.gcode.3mf": traversal,
    "hostile/overlapping.gcode.3mf": overlapping,
    "hostile/project-not-sliced.3mf": project_without_gcode,
    "hostile/changed-after-slicing.gcode.3mf": changed_after_slicing,
}


def main():
    check = "--check" in sys.argv
    stale = []
    for name, make in FIXTURES.items():
        path = os.path.join(HERE, name)
        data = make()
        if check:
            with open(path, "rb") as f:
                if f.read() != data:
                    stale.append(name)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    if stale:
        sys.exit("stale fixtures (run make_fixtures.py): " + ", ".join(stale))


if __name__ == "__main__":
    main()
