// HMS (health management system) alerts: plain text for a few well-known codes, the module
// that raised them, and the link to Bambu Lab's wiki page for the code.

// Codes as the API gives them (`AAAA_BBBB_CCCC_DDDD`). A small table of well-known ones;
// everything else links to the wiki.
const KNOWN = {
  '0300_0100_0001_0001': 'Heatbed temperature abnormal: the heater may be short-circuited.',
  '0300_0100_0001_0002': 'Heatbed temperature abnormal: the heater may be open-circuited, or the thermal switch is open.',
  '0300_0100_0001_0003': 'Heatbed temperature abnormal: the heater is over-temperature.',
  '0300_0100_0001_0006': 'Heatbed temperature abnormal: the sensor may be short-circuited.',
  '0300_0100_0001_0007': 'Heatbed temperature abnormal: the sensor may be open-circuited.',
  '0300_0200_0001_0001': 'Nozzle temperature abnormal: the heater may be short-circuited.',
  '0300_0200_0001_0002': 'Nozzle temperature abnormal: the heater may be open-circuited.',
  '0300_0200_0001_0003': 'Nozzle temperature abnormal: the heater is over-temperature.',
  '0300_0200_0001_0006': 'Nozzle temperature abnormal: the sensor may be short-circuited.',
  '0300_0200_0001_0007': 'Nozzle temperature abnormal: the sensor may be open-circuited.',
  '0300_0300_0001_0001': 'The hotend cooling fan is too slow or stopped.',
  '0300_0400_0002_0001': 'The part cooling fan is too slow or stopped.',
  '0300_0D00_0001_0003': 'The build plate is not placed properly.',
  '0300_1200_0002_0001': 'The front cover of the toolhead fell off.',
  '0500_0100_0003_0004': 'Not enough space on the SD card.',
  '0700_5100_0003_0001': 'The AMS is disabled; load filament from the spool holder.',
  '0C00_0300_0003_0007': 'Possible first-layer defects.',
  '0C00_0300_0003_0008': 'Possible spaghetti failure.',
  '12FF_2000_0002_0001': 'The external filament has run out; load new filament.',
};

// Print errors (`print_error`, `AAAA_EEEE`).
const PRINT_ERRORS = {
  '0300_400C': 'The print was cancelled.',
};

const MODULES = {
  '0x03': 'motion controller',
  '0x05': 'mainboard',
  '0x07': 'AMS',
  '0x08': 'toolhead',
  '0x0C': 'AI camera',
  '0x12': 'AMS Lite',
  '0x18': 'AMS-HT',
};

const SEVERITY_RANK = { fatal: 0, serious: 1, common: 2, info: 3, unknown: 4 };

// AMS codes name the unit and slot: `07uu_2s00_…` is slot `s` of unit `uu`.
const AMS_RUNOUT = /^07([0-9A-F]{2})_2([0-3])00_0002_0001$/;

export function hmsText(code) {
  if (KNOWN[code]) return KNOWN[code];
  const runout = AMS_RUNOUT.exec(code ?? '');
  if (runout) {
    const unit = String.fromCharCode(65 + parseInt(runout[1], 16));
    return `AMS ${unit} slot ${Number(runout[2]) + 1}: the filament has run out.`;
  }
  return null;
}

export function printErrorText(code) {
  return PRINT_ERRORS[code] ?? null;
}

export function moduleName(module) {
  return MODULES[module] ?? (module ? `module ${module}` : 'unknown module');
}

export function wikiUrl(code) {
  return `https://wiki.bambulab.com/en/x1/troubleshooting/hmscode/${encodeURIComponent(code)}`;
}

// Most severe first.
export function sortAlerts(alerts) {
  return [...(alerts ?? [])].sort((a, b) =>
    (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9) || a.code.localeCompare(b.code));
}

export function severityKind(severity) {
  return { fatal: 'danger', serious: 'danger', common: 'warn', info: 'info' }[severity] ?? 'neutral';
}
