// The login page: POST /api/login, which sets the session cookie; then the dashboard.
'use strict';

(() => {
  const form = document.getElementById('login');
  const error = document.getElementById('error');
  const button = document.getElementById('submit');

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    button.disabled = true;
    try {
      const r = await fetch('/api/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({
          username: document.getElementById('username').value.trim(),
          password: document.getElementById('password').value,
        }),
      });
      if (r.ok) {
        location.replace('/');
        return;
      }
      let msg = `login failed (${r.status})`;
      try {
        const body = await r.json();
        if (body && body.error) msg = body.error;
      } catch (_) { /* not JSON: keep the status */ }
      error.textContent = msg;
      document.getElementById('password').select();
    } catch (err) {
      error.textContent = `cannot reach the controller (${err.message})`;
    } finally {
      button.disabled = false;
    }
  });
})();
