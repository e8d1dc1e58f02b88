import { expect, it } from 'vitest';
import { THEME_KEY, applyTheme, loadTheme, nextTheme, saveTheme } from './theme';

it('cycles system → light → dark and persists the choice', () => {
  expect(loadTheme()).toBe('system');
  expect(nextTheme('system')).toBe('light');
  expect(nextTheme('light')).toBe('dark');
  expect(nextTheme('dark')).toBe('system');

  saveTheme('dark');
  expect(localStorage.getItem(THEME_KEY)).toBe('dark');
  expect(loadTheme()).toBe('dark');
  applyTheme('dark');
  expect(document.documentElement.getAttribute('data-theme')).toBe('dark');

  saveTheme('system');
  applyTheme('system');
  expect(localStorage.getItem(THEME_KEY)).toBeNull();
  expect(document.documentElement.hasAttribute('data-theme')).toBe(false);

  localStorage.setItem(THEME_KEY, 'neon');
  expect(loadTheme()).toBe('system');
});
