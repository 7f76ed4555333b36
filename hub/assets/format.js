// Formatting of numbers, times and printer states for display.

export function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export function temperature(current, target) {
  if (current == null) return '—';
  const now = `${Math.round(current)}`;
  if (target != null && target > 0) return `${now} / ${Math.round(target)} °C`;
  return `${now} °C`;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

// "3 minutes ago", "in 5 days".
export function relativeTime(ms, now = Date.now()) {
  if (ms == null) return 'never';
  const delta = (ms - now) / 1000;
  const abs = Math.abs(delta);
  const units = [
    ['year', 365 * 86400], ['month', 30 * 86400], ['week', 7 * 86400],
    ['day', 86400], ['hour', 3600], ['minute', 60],
  ];
  for (const [unit, size] of units) {
    if (abs >= size) return relative.format(Math.round(delta / size), unit);
  }
  return abs < 10 ? 'just now' : relative.format(Math.round(delta), 'second');
}

const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export function dateTime(ms) {
  return ms == null ? '—' : dateTimeFormat.format(new Date(ms));
}

export function clock(ms) {
  return ms == null ? '—' : timeFormat.format(new Date(ms));
}

export function bytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function count(n) {
  return n == null ? '—' : new Intl.NumberFormat().format(n);
}

// Printer states as the API names them, and how to show them.
export const STATES = ['idle', 'preparing', 'printing', 'paused', 'finished', 'failed', 'offline'];

export function stateLabel(state) {
  if (!state) return 'no data';
  if (state === 'offline') return 'unreachable';
  return state;
}

// The datetime-local value for a time, and back.
export function toLocalInput(ms) {
  if (ms == null) return '';
  const date = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

export function fromLocalInput(text) {
  if (!text) return null;
  const ms = new Date(text).getTime();
  return Number.isFinite(ms) ? ms : null;
}
