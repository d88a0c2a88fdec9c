document.getElementById('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  const r = await fetch('/api/login', {method: 'POST', headers: {'content-type': 'application/json'},
    body: JSON.stringify({username: document.getElementById('username').value, password: document.getElementById('password').value})});
  if (r.ok) location.href = '/'; else document.getElementById('error').textContent = (await r.json()).error;
});
