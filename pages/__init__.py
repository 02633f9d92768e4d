"""The app's pages (`<name>.render`, listed by app.py's st.navigation) and the parts they share; present only.

A regular package, so `pages.*` never merges with another `pages` folder on sys.path. Streamlit's legacy pages/
mode skips this file."""
