"""Streamlit-side code shared by the pages: session state, loading, rendering."""
